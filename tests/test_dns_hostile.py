"""10,000+ random and mutated packets over UDP and TCP; the server must keep answering."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct

import dns.message
from dns_helpers import (
    ZONE,
    ask,
    dns_path,  # noqa: F401  (autouse: every path)
    example_registry,
    running,
)

from jarvis_dns.dns.server import DnsServer

SEED = 20240607
UDP_PACKETS = 8_000
TCP_CONNECTIONS = 25
TCP_FRAMES_EACH = 100  # 2,500 framed messages over TCP
BATCH = 50  # packets sent before the test yields so the server (same loop) can work


def _seeds() -> list[bytes]:
    seeds = []
    for name, rdtype in [
        (f"_auth._tcp.{ZONE}", "SRV"),
        (f"auth.{ZONE}", "A"),
        (f"1._auth._tcp.{ZONE}", "TXT"),
        (f"_services._dns-sd._udp.{ZONE}", "PTR"),
        (ZONE, "SOA"),
        ("example.com.", "A"),
    ]:
        seeds.append(dns.message.make_query(name, rdtype).to_wire())
        seeds.append(dns.message.make_query(name, rdtype, use_edns=0, payload=4096).to_wire())
    return seeds


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    how = rng.randrange(8)
    if how == 0:  # flip a few bytes anywhere
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:  # cut short
        del data[rng.randrange(len(data)) :]
    elif how == 2:  # junk appended
        data += rng.randbytes(rng.randint(1, 64))
    elif how == 3:  # header counts and flags scrambled
        data[2:12] = rng.randbytes(10)
    elif how == 4:  # a compression pointer to somewhere, maybe itself
        at = rng.randrange(12, len(data))
        data[at : at + 2] = struct.pack("!H", 0xC000 | rng.randrange(len(data) + 8))
    elif how == 5:  # question count zeroed: the question becomes trailing junk
        data[4:6] = b"\x00\x00"
    elif how == 6:  # another opcode
        data[2] = (data[2] & 0x87) | (rng.choice([1, 2, 3, 4, 5, 15]) << 3)
    else:  # pure noise
        data = bytearray(rng.randbytes(rng.randint(0, 600)))
    return bytes(data)


def _packets(rng: random.Random, n: int) -> list[bytes]:
    seeds = _seeds()
    return [_mutate(rng, rng.choice(seeds)) for _ in range(n)]


async def _flood_udp(server: DnsServer, packets: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for i, packet in enumerate(packets):
            with contextlib.suppress(BlockingIOError):  # our send buffer is full: UDP drops
                sock.sendto(packet, server.addresses[0])
            if i % BATCH == BATCH - 1:
                await _caught_up(server, i + 1)


async def _caught_up(server: DnsServer, sent: int) -> None:
    """Yield until the server has taken every datagram sent (or a short while passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5
    while loop.time() < deadline:
        stats = server.stats()
        if stats["queries_udp"] + stats["backlog_dropped"] >= sent and not stats["udp_backlog"]:
            return
        await asyncio.sleep(0)


async def _flood_tcp(server: DnsServer, rng: random.Random, frames: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection(*server.addresses[0])
    try:
        for frame in frames:
            writer.write(struct.pack("!H", len(frame)) + frame)
        if rng.random() < 0.3:
            writer.write(rng.randbytes(rng.randint(1, 300)))  # framing itself broken
        await writer.drain()
        writer.write_eof()
        # Read whatever comes back until the server closes or stays quiet.
        while await asyncio.wait_for(reader.read(65536), timeout=2):
            pass
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def test_hostile_packets_leave_the_server_answering() -> None:
    rng = random.Random(SEED)
    async with running(example_registry(), tcp_idle_s=1.0) as server:
        await _flood_udp(server, _packets(rng, UDP_PACKETS))
        tcp_frames = [_packets(rng, TCP_FRAMES_EACH) for _ in range(TCP_CONNECTIONS)]
        await asyncio.wait_for(
            asyncio.gather(*(_flood_tcp(server, rng, f) for f in tcp_frames)), timeout=30
        )
        for transport in ("udp", "tcp"):
            srv = await ask(server, f"_auth._tcp.{ZONE}", "SRV", transport)
            assert len(srv.answer) == 3 and len(srv.additional) == 3
            assert (await ask(server, f"nope.{ZONE}", "A", transport)).rcode == "NXDOMAIN"
        stats = server.stats()
    total = UDP_PACKETS + TCP_CONNECTIONS * TCP_FRAMES_EACH
    assert total >= 10_000
    received = stats["queries_udp"] + stats["queries_tcp"] + stats["backlog_dropped"]
    assert received >= total * 0.9  # the kernel may drop a few datagrams under a flood
    assert stats["dropped"] > 1_000
    assert stats["formerr"] > 0 and stats["notimp"] > 0
    assert stats["errors"] == 0  # no packet reached an unexpected exception
