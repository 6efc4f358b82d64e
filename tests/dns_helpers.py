"""Shared pieces of the DNS tests: a clock, the example registry, servers, queries."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest
from conftest import free_port
from ledger import Ledger

from jarvis_dns.config import Config
from jarvis_dns.dns import build
from jarvis_dns.dns.server import DnsServer
from jarvis_dns.dns.upstream import Upstream
from jarvis_dns.models import InstanceSpec, Status

ZONE = "jarvis.internal."
TIMEOUT_S = 3.0
# Which path config() and dns_server() build servers with; the dns_path fixture runs
# each test on all three.
FAST_PATH = True  # standard queries by the cache and the hand encoder; False: dnslib
CACHE = True  # False: every reply encoded anew, by hand (the miss path alone)
PATHS = {"fast": (True, True), "hand": (True, False), "dnslib": (False, True)}


@pytest.fixture(autouse=True, params=sorted(PATHS))
def dns_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every DNS test that imports this runs on the fast path (answer cache), the
    hand-encoded miss path (no cache) and the dnslib path; the expectations are the
    same, so the three answer alike."""
    fast, cache = PATHS[request.param]
    monkeypatch.setattr(f"{__name__}.FAST_PATH", fast)
    monkeypatch.setattr(f"{__name__}.CACHE", cache)
    return str(request.param)


@dataclass
class FakeClock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def example_registry(clock: FakeClock | None = None) -> Ledger:
    """The registry behind the README's dig examples (the "Use it from DNS" section)."""
    reg = Ledger(clock=clock or FakeClock())
    reg.register(
        InstanceSpec(
            "auth",
            1,
            "10.0.0.11",
            8443,
            metadata={"version": "2.1", "region": "eu", "tags": ["blue", "eu"]},
        )
    )
    reg.register(
        InstanceSpec(
            "auth",
            2,
            "10.0.0.12",
            8443,
            metadata={"version": "2.1", "tags": ["green"], "capabilities": ["oauth"]},
            busy=True,
        )
    )
    reg.register(InstanceSpec("auth", 3, "10.0.0.13", 8443))
    reg.set_status("auth", 3, status=Status.DEAD, reason="test")
    reg.register(InstanceSpec("auth", 4, "fd00::14", 8443, metadata={"capabilities": ["oauth"]}))
    reg.register(InstanceSpec("web", 1, "localhost", 8080))
    reg.register(InstanceSpec("web", "edge", "edge.example.net", 443))
    reg.register(InstanceSpec("maint", 1, "10.0.0.31", 80, status=Status.MAINTENANCE))
    return reg


def config(tmp_path: Any = None, **overrides: Any) -> Config:
    zones_dir = str(tmp_path / "zones") if tmp_path is not None else "/nonexistent/zones"
    values: dict[str, Any] = {
        "dns": ["127.0.0.1:0"],
        "zones_dir": zones_dir,
        "dns_fast_path": FAST_PATH,
    }
    values.update(overrides)
    return Config(**values)


@contextlib.asynccontextmanager
async def running(
    registry: Ledger, cfg: Config | None = None, **kwargs: Any
) -> AsyncIterator[DnsServer]:
    server = dns_server(registry, cfg, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def dns_server(
    registry: Ledger,
    cfg: Config | None = None,
    *,
    upstream: Upstream | None = None,
    cache: bool | None = None,
    udp_limit: int | None = None,
    **kwargs: Any,
) -> DnsServer:
    """A DnsServer over the ledger's view, as app.py builds one over the real view."""
    cfg = cfg or config()
    cache = CACHE if cache is None else cache
    responder = build(
        registry.discovery, None, cfg, upstream=upstream, cache=cache, udp_limit=udp_limit
    )
    return DnsServer(responder, registry, cfg, **kwargs)


@dataclass
class Reply:
    """A reply reduced to what the tables compare."""

    rcode: str
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)
    message: Any = None


def _texts(section: Any) -> list[str]:
    return [
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in section
        for rd in rrset
    ]


def reduce(msg: dns.message.Message) -> Reply:
    return Reply(
        rcode=dns.rcode.to_text(msg.rcode()),
        answer=_texts(msg.answer),
        authority=_texts(msg.authority),
        additional=_texts(msg.additional),
        message=msg,
    )


async def ask(
    server: DnsServer,
    name: str,
    rdtype: str = "A",
    transport: str = "udp",
    source: str | None = None,
    **make: Any,
) -> Reply:
    """One query over UDP or TCP; source: the client's own address (127.0.0.2, ...)."""
    host, port = server.addresses[0]
    query = dns.message.make_query(name, rdtype, **make)
    if transport == "udp":
        msg = await dns.asyncquery.udp(query, host, port=port, timeout=TIMEOUT_S, source=source)
    else:
        msg = await dns.asyncquery.tcp(query, host, port=port, timeout=TIMEOUT_S, source=source)
    return reduce(msg)


UPSTREAM_ZONE = "upstream.test."


def _upstream_registry() -> Ledger:
    reg = Ledger(clock=lambda: 0.0)
    reg.register(InstanceSpec("svc", 1, "192.0.2.1", 80))
    for i in range(200):
        reg.register(InstanceSpec("big", i, f"10.9.{i // 256}.{i % 256}", 9000))
    return reg


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    """A second jarvis-dns, authoritative for upstream.test.: its "host:port"."""
    async with running(_upstream_registry(), config(domain="upstream.test")) as server:
        host, port = server.addresses[0]
        yield f"{host}:{port}"


async def _until_listening(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once the DNS server just started as `proc` answers on 127.0.0.1:port; False
    if it exited (the port was taken after we picked it).

    A query to a UDP port nobody has bound yet is refused at once, so a client's retries
    run out in milliseconds (dig +tries=20 spends about 40 ms in all): on a loaded machine
    the process may not have bound by then. Any reply (dnsmasq answers version.bind
    itself, forwarding nothing and caching nothing) means it listens.
    """
    query = dns.message.make_query("version.bind.", "TXT", "CH")
    deadline = time.monotonic() + 15.0
    while proc.poll() is None:
        try:
            await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=0.5)
            return True
        except (OSError, dns.exception.Timeout):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)
    return False


@contextlib.asynccontextmanager
async def dnsmasq(binary: str, *options: str) -> AsyncIterator[int]:
    """dnsmasq on 127.0.0.1 with these options; yields its port once it answers."""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
             f"--port={port}", "--pid-file=", *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if await _until_listening(proc, port):
                yield port
                return
        finally:
            proc.terminate()
            proc.wait(timeout=5)
    raise AssertionError("dnsmasq exited at start 5 times (ports taken?)")


def records(zone: dns.zone.Zone) -> set[str]:
    """Every record, names absolute."""
    origin = zone.origin
    return {
        f"{name.derelativize(origin)} {rdataset.ttl} {dns.rdatatype.to_text(rdataset.rdtype)} "
        + rd.to_text(origin=origin, relativize=False)
        for name, rdataset in zone.iterate_rdatasets()
        for rd in rdataset
    }
