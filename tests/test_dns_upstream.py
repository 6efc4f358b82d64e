"""Forwarding outside our zones to upstreams started on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Iterator

import dns.flags
import pytest
from dns_helpers import (
    UPSTREAM_ZONE,
    ask,
    config,
    dns_path,  # noqa: F401  (autouse: every path)
    dns_server,
    dnsmasq,
    upstream,
)
from ledger import Ledger

from jarvis_dns.dns.server import DnsServer


@contextlib.contextmanager
def _silent_udp() -> Iterator[str]:
    """An upstream that takes queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _forwarder(*upstreams: str, timeout: float = 2.0) -> DnsServer:
    return dns_server(
        Ledger(clock=lambda: 0.0), config(upstreams=list(upstreams), upstream_timeout_s=timeout)
    )


@contextlib.asynccontextmanager
async def _started(server: DnsServer) -> AsyncIterator[DnsServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_names_outside_our_zones_are_forwarded(transport: str) -> None:
    async with upstream() as up, _started(_forwarder(up)) as server:
        reply = await ask(server, f"svc.{UPSTREAM_ZONE}", "A", transport)
        missing = await ask(server, f"nope.{UPSTREAM_ZONE}", "A", transport)
        ours = await ask(server, "nope.jarvis.internal.", "A", transport)
        assert server.stats()["forwarded"] == 2
    assert reply.answer == [f"svc.{UPSTREAM_ZONE} 5 A 192.0.2.1"]
    assert reply.message.flags & dns.flags.RA
    assert missing.rcode == "NXDOMAIN" and missing.authority[0].startswith(UPSTREAM_ZONE)
    assert ours.rcode == "NXDOMAIN" and ours.message.flags & dns.flags.AA


async def test_a_truncated_upstream_reply_is_retried_over_tcp() -> None:
    async with upstream() as up, _started(_forwarder(up)) as server:
        over_tcp = await ask(server, f"_big._tcp.{UPSTREAM_ZONE}", "SRV", "tcp")
        over_udp = await ask(server, f"_big._tcp.{UPSTREAM_ZONE}", "SRV", "udp")
    assert len(over_tcp.answer) == 200
    assert over_udp.message.flags & dns.flags.TC and over_udp.answer == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_an_upstream_that_never_answers_means_servfail(transport: str) -> None:
    with _silent_udp() as silent:
        async with _started(_forwarder(silent, timeout=0.3)) as server:
            reply = await ask(server, "example.com.", "A", transport)
            assert server.stats()["servfail"] == 1
    assert reply.rcode == "SERVFAIL"


async def test_the_next_upstream_is_tried_within_the_deadline() -> None:
    with _silent_udp() as silent:
        async with upstream() as up, _started(_forwarder(silent, up, timeout=1.0)) as server:
            reply = await ask(server, f"svc.{UPSTREAM_ZONE}", "A")
    assert reply.answer == [f"svc.{UPSTREAM_ZONE} 5 A 192.0.2.1"]


async def test_pipelined_forwards_on_one_tcp_connection() -> None:
    import struct

    import dns.message

    names = [f"svc.{UPSTREAM_ZONE}", "nope.jarvis.internal.", f"x.{UPSTREAM_ZONE}"]
    queries = [dns.message.make_query(n, "A") for n in names]
    async with upstream() as up, _started(_forwarder(up)) as server:
        reader, writer = await asyncio.open_connection(*server.addresses[0])
        writer.write(
            b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
        )
        ids = set()
        for _ in queries:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            ids.add(dns.message.from_wire(await reader.readexactly(size)).id)
        writer.close()
    assert ids == {q.id for q in queries}  # forwarded ones may come out of order


DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if shutil.os.path.exists("/usr/sbin/dnsmasq") else None
)  # type: ignore[attr-defined]


@pytest.mark.skipif(DNSMASQ is None, reason="dnsmasq is not installed")
async def test_forwarding_to_dnsmasq() -> None:
    # dnsmasq needs a moment to bind: dnsmasq() waits until it answers.
    async with (
        dnsmasq(str(DNSMASQ), "--host-record=dm.test,192.0.2.77") as port,
        _started(_forwarder(f"127.0.0.1:{port}")) as server,
    ):
        reply = await ask(server, "dm.test.", "A")
    assert reply.answer == ["dm.test. 0 A 192.0.2.77"]
