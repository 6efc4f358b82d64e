"""The sockets: binding, TCP framing and pipelining, idle timeout, truncation, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import pytest
from dns_helpers import (
    TIMEOUT_S,
    ZONE,
    ask,
    config,
    dns_path,  # noqa: F401  (autouse: every path)
    example_registry,
    reduce,
    running,
)
from ledger import Ledger

from jarvis_dns.errors import ConfigError
from jarvis_dns.models import InstanceSpec


def _big_registry(n: int = 200) -> Ledger:
    reg = Ledger(clock=lambda: 0.0)
    for i in range(n):
        reg.register(InstanceSpec("big", i, f"10.1.{i // 256}.{i % 256}", 9000 + i))
    return reg


async def _read_frame(reader: asyncio.StreamReader) -> dns.message.Message:
    (size,) = struct.unpack("!H", await reader.readexactly(2))
    return dns.message.from_wire(await reader.readexactly(size))


async def test_200_instances_truncate_over_udp_and_come_whole_over_tcp() -> None:
    async with running(_big_registry()) as server:
        host, port = server.addresses[0]
        query = dns.message.make_query(f"_big._tcp.{ZONE}", "SRV", use_edns=0, payload=1232)
        udp = await dns.asyncquery.udp(query, host, port=port, timeout=3)
        full, used_tcp = await dns.asyncquery.udp_with_fallback(query, host, port=port, timeout=3)
        assert server.stats()["truncated"] == 2
    assert udp.flags & dns.flags.TC and udp.answer == []
    assert used_tcp and len(full.answer[0]) == 200 and len(full.additional) == 200


async def test_tcp_pipelining_answers_every_query_on_one_connection() -> None:
    names = [f"{i}.auth.{ZONE}" for i in (1, 2, 4)] + [f"auth.{ZONE}", f"nope.{ZONE}"]
    queries = [dns.message.make_query(n, "A") for n in names]
    async with running(example_registry()) as server:
        reader, writer = await asyncio.open_connection(*server.addresses[0])
        writer.write(
            b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
        )
        replies = [await _read_frame(reader) for _ in queries]
        writer.close()
        await writer.wait_closed()
        assert server.stats()["queries_tcp"] == 5
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [reduce(r).rcode for r in replies] == ["NOERROR"] * 4 + ["NXDOMAIN"]


async def test_idle_tcp_connections_are_closed() -> None:
    async with running(example_registry(), tcp_idle_s=0.1) as server:
        reader, writer = await asyncio.open_connection(*server.addresses[0])
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()


async def test_a_half_sent_tcp_message_does_not_hold_the_server() -> None:
    async with running(example_registry(), tcp_idle_s=0.1) as server:
        _, writer = await asyncio.open_connection(*server.addresses[0])
        writer.write(b"\x00\x40\x12")  # promises 64 bytes, sends one
        other = await ask(server, f"auth.{ZONE}", "A", "tcp")
        assert other.rcode == "NOERROR"
        writer.close()


async def test_port_zero_binds_udp_and_tcp_on_one_port() -> None:
    async with running(example_registry(), config(dns=["127.0.0.1:0", "127.0.0.1:0"])) as server:
        (_, p1), (_, p2) = server.addresses
        assert p1 != p2 and p1 > 0
        for transport in ("udp", "tcp"):
            assert (await ask(server, f"auth.{ZONE}", "A", transport)).rcode == "NOERROR"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_bind() -> None:
    async with running(example_registry(), config(dns=["[::1]:0"])) as server:
        assert server.addresses[0][0] == "::1"
        reply = await ask(server, f"4.auth.{ZONE}", "AAAA", "tcp")
    assert reply.answer == [f"4.auth.{ZONE} 5 AAAA fd00::14"]


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
async def test_a_taken_port_is_a_config_error(kind: int) -> None:
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            async with running(example_registry(), config(dns=[f"127.0.0.1:{port}"])):
                pass


async def test_stop_closes_connections_promptly() -> None:
    server_cm = running(example_registry())
    server = await server_cm.__aenter__()
    reader, writer = await asyncio.open_connection(*server.addresses[0])
    await asyncio.wait_for(server_cm.__aexit__(None, None, None), timeout=3)
    assert await asyncio.wait_for(reader.read(), timeout=3) == b""
    writer.close()
    assert server.stats()["tcp_open"] == 0


async def test_changes_show_in_the_very_next_answer_over_the_wire() -> None:
    reg = example_registry()
    async with running(reg) as server:
        before = await ask(server, f"_auth._tcp.{ZONE}", "SRV")
        reg.deregister("auth", 1)
        after = await ask(server, f"_auth._tcp.{ZONE}", "SRV")
        reg.register(InstanceSpec("auth", 5, "10.0.0.15", 8443))
        added = await ask(server, f"_auth._tcp.{ZONE}", "SRV", "tcp")
    assert len(before.answer) == 3
    assert not any("1.auth" in a for a in after.answer) and len(after.answer) == 2
    assert any("5.auth" in a for a in added.answer)


async def test_stats_count_by_transport() -> None:
    async with running(example_registry()) as server:
        await ask(server, f"auth.{ZONE}", "A", "udp")
        await ask(server, f"nope.{ZONE}", "A", "tcp")
        stats = server.stats()
    assert (stats["queries_udp"], stats["queries_tcp"], stats["nxdomain"]) == (1, 1, 1)
    assert stats["tcp_connections"] == 1


async def test_the_udp_backlog_is_bounded_and_drops_the_overflow() -> None:
    from jarvis_dns.dns.server import MAX_UDP_BACKLOG

    async with running(example_registry()) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            protocol = server._udp[0].get_protocol()
            # An EDNS option (a cookie) sends the query the dnslib way, through the backlog.
            cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")
            wire = dns.message.make_query(
                f"auth.{ZONE}", "A", use_edns=0, options=[cookie]
            ).to_wire()
            # Delivered faster than the loop can run: nothing is answered in between.
            for _ in range(MAX_UDP_BACKLOG + 10):
                protocol.datagram_received(wire, client.getsockname())  # type: ignore[attr-defined]
            assert server.stats()["backlog_dropped"] == 10
            assert server.stats()["udp_backlog"] == MAX_UDP_BACKLOG
            answered = 0
            while answered < MAX_UDP_BACKLOG and server.stats()["udp_backlog"]:
                await asyncio.sleep(0)  # one batch answered per turn of the loop
                with contextlib.suppress(BlockingIOError):
                    while client.recv(4096):
                        answered += 1
            await asyncio.sleep(0.05)
            with contextlib.suppress(BlockingIOError):
                while client.recv(4096):
                    answered += 1
    assert answered == MAX_UDP_BACKLOG
    assert server.stats()["queries_udp"] == MAX_UDP_BACKLOG


async def test_the_fast_path_answers_inside_datagram_received() -> None:
    async with running(example_registry()) as server:
        fast = server.config.dns_fast_path
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(TIMEOUT_S)
            protocol = server._udp[0].get_protocol()
            query = dns.message.make_query(f"auth.{ZONE}", "A")
            protocol.datagram_received(query.to_wire(), client.getsockname())  # type: ignore[attr-defined]
            # Fast: sent already, nothing queued. dnslib: queued for the next turn.
            assert server.stats()["udp_backlog"] == (0 if fast else 1)
            await asyncio.sleep(0.01)
            reply = dns.message.from_wire(client.recv(4096))
            assert server.stats()["queries_udp"] == 1
    assert reply.id == query.id
    assert reduce(reply).answer == [f"auth.{ZONE} 5 A 10.0.0.11"]
