"""Abuse benchmark (issue 12): the earlier probes rerun against `serve`.

    .venv/bin/python scripts/bench/abuse.py [--quick]

HTTP:
* held: 3,000 idle connections from one address: how many the server accepted (the
  per-client cap), and how long the accepted ones were held before it closed them;
* slowloris: a request whose header trickles in a byte every 0.5 s: when it was cut;
* waiting queries: server RSS per blocking query held (1,000 of them), and what the
  next query past --max-waiting-queries gets;
DNS:
* amplification: one address floods a large SRV answer over UDP (10,000 queries a
  second for 3 s), with response-rate limiting off and at its default; DNS bytes
  back over DNS bytes sent, and how many answers went out whole, slipped or dropped
  (the server's own counters, from /v1/health);
* held: 1,100 idle DNS-over-TCP connections from one address: how many the server
  kept (the per-client cap), and whether a query from another address is served.
The client's side (a byte-a-second server, a 300 MB body) is measured by
tests/test_client_hardening.py.

Writes its section of BENCHMARKS.md (not with --quick).
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # keep this folder behind the standard library

import argparse
import asyncio
import contextlib
import resource
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import httpx
from _common import free_port, header, jarvis, stop, wait_http, write_section

FLOOD_RATE = 10_000  # queries a second from one address
FLOOD_S = 3.0
AMP_INSTANCES = 19  # the largest SRV answer with glue under 1,232 bytes: 1,197
TCP_HELD = 1_100


def progress(step: str) -> None:
    print(f"abuse: {step} done", file=sys.stderr, flush=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def held(port: int, count: int) -> tuple[int, float]:
    """Open `count` idle connections; (accepted, seconds until the server closed them)."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            opened.append(await asyncio.open_connection("127.0.0.1", port))
    started = time.monotonic()

    async def closed_at(reader: asyncio.StreamReader) -> float | None:
        try:
            async with asyncio.timeout(5.0):
                data = await reader.read(1)
        except TimeoutError:
            return None  # still open: accepted
        except OSError:
            return 0.0
        return time.monotonic() - started if not data else None

    first = await asyncio.gather(*(closed_at(r) for r, _ in opened))
    accepted = [(r, w) for (r, w), t in zip(opened, first, strict=True) if t is None]
    for (_, w), t in zip(opened, first, strict=True):
        if t is not None:
            w.close()

    async def wait_close(reader: asyncio.StreamReader) -> float:
        with contextlib.suppress(OSError):
            while await reader.read(4096):
                pass
        return time.monotonic() - started

    times = await asyncio.gather(*(wait_close(r) for r, _ in accepted))
    for _, w in accepted:
        w.close()
    return len(accepted), max(times, default=0.0)


async def slowloris(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()

    async def drip() -> None:
        with contextlib.suppress(OSError):
            while True:
                writer.write(b"X")
                await asyncio.sleep(0.5)

    task = asyncio.create_task(drip())
    with contextlib.suppress(OSError):
        while await reader.read(4096):
            pass
    task.cancel()
    writer.close()
    return time.monotonic() - started


async def waiting(url: str, pid: int, count: int) -> tuple[float, int]:
    """KiB of server RSS per waiting blocking query, and the status past the cap."""
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        await c.post("/v1/instances", json={"service_type": "w", "instance_id": 1, "port": 80})
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        params = {"index": "1", "wait": "60s"}
        tasks = [asyncio.create_task(c.get("/v1/services/w", params=params)) for _ in range(count)]
        # Until every query is parked: the server's RSS stops growing for a second.
        after, last = rss_kib(pid), -1
        while after != last:
            await asyncio.sleep(1.0)
            last, after = after, rss_kib(pid)
        past = await c.get("/v1/services/w", params=params)
        await c.put("/v1/services/w/instances/1/status", json={"busy": True})
        await asyncio.gather(*tasks)
    return (after - before) / count, past.status_code


# -- DNS ------------------------------------------------------------------------------


@dataclass
class Flood:
    sent: int
    query_size: int
    answer_size: int  # the largest reply that came back
    bytes_back: int  # DNS payload that came back to the flooder
    counts: dict[str, int]  # the server's DNS counters after the flood

    @property
    def bytes_out(self) -> int:
        return self.sent * self.query_size

    @property
    def amplification(self) -> float:
        return self.bytes_back / self.bytes_out

    @property
    def lost(self) -> int:
        return self.sent - self.counts["queries_udp"] - self.counts["backlog_dropped"]


def _health(url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(url + "/v1/health", timeout=5).json()["dns"]
    return stats


def flood(url: str, port: int, seconds: float) -> Flood:
    """FLOOD_RATE queries a second for `seconds` from one UDP socket (bounded: at most
    rate x seconds), reading what comes back as it goes."""
    wire = dns.message.make_query("_amp._tcp.jarvis.internal.", "SRV", use_edns=0, payload=4096)
    query = wire.to_wire()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setblocking(False)
    inbox = _Inbox(sock)
    total, sent = int(FLOOD_RATE * seconds), 0
    started = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - started) * FLOOD_RATE))
        while sent < due:
            try:
                sock.sendto(struct.pack("!H", sent % 65536) + query[2:], ("127.0.0.1", port))
            except BlockingIOError:
                break
            sent += 1
        inbox.drain()
        time.sleep(0.001)
    # Until the server has counted every query (bounded), then what is left to read.
    deadline = time.monotonic() + 10.0
    counts = _health(url)
    while counts["queries_udp"] + counts["backlog_dropped"] < sent and time.monotonic() < deadline:
        inbox.drain()
        time.sleep(0.05)
        counts = _health(url)
    inbox.drain()
    sock.close()
    return Flood(sent, len(query), inbox.largest, inbox.received, counts)


@dataclass
class _Inbox:
    """What came back to the flooder's socket."""

    sock: socket.socket
    received: int = 0
    largest: int = 0

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                size = len(self.sock.recv(65536))
                self.received += size
                self.largest = max(self.largest, size)


async def tcp_held(port: int, count: int) -> tuple[int, bool]:
    """Open `count` idle DNS-over-TCP connections from 127.0.0.1: (how many the server
    kept, whether a query over TCP from 127.0.0.2 was answered meanwhile)."""
    opened = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            opened.append(await asyncio.open_connection("127.0.0.1", port))

    async def kept(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(1.0):
                return bool(await reader.read(1))  # b"": closed by the server
        except TimeoutError:
            return True  # still open
        except OSError:
            return False

    still_open = sum(await asyncio.gather(*(kept(r) for r, _ in opened)))
    query = dns.message.make_query("jarvis.internal.", "SOA")
    try:
        await dns.asyncquery.tcp(query, "127.0.0.1", port=port, source="127.0.0.2", timeout=5)
        served = True
    except (OSError, TimeoutError, dns.exception.DNSException):
        served = False
    for _, writer in opened:
        writer.close()
    return still_open, served


async def dns_probes(quick: bool) -> str:
    http, port = free_port(), free_port()
    seconds = 1.0 if quick else FLOOD_S
    floods: dict[str, Flood] = {}
    with tempfile.TemporaryDirectory() as data:
        for label, extra in (("off", ["--rrl-rps", "0"]), ("on", [])):
            # Loopback is exempt by default; here it stands for a client on the network.
            argv = ["--data-dir", data, "--store", "memory://", "--rrl-exempt", "none", *extra]
            server = jarvis(http, port, *argv)
            try:
                url = f"http://127.0.0.1:{http}"
                wait_http(url + "/v1/health")
                await _register_amp(url)
                floods[label] = await asyncio.to_thread(flood, url, port, seconds)
                progress(f"dns flood, RRL {label}")
                if label == "on":
                    kept, served = await tcp_held(port, TCP_HELD)
                    progress("dns tcp held")
            finally:
                stop(server)
    return _dns_table(floods, kept, served)


async def _register_amp(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as c:
        for i in range(AMP_INSTANCES):
            body = {"service_type": "amp", "instance_id": i, "host": f"10.0.0.{i + 1}", "port": 443}
            (await c.post("/v1/instances", json=body)).raise_for_status()


def _dns_table(floods: dict[str, Flood], kept: int, served: bool) -> str:
    off, on = floods["off"], floods["on"]

    def row(name: str, figure: Callable[[Flood], str]) -> str:
        return f"| {name} | {figure(off)} | {figure(on)} |"

    rows = [
        "| UDP flood from one address | RRL off (`--rrl-rps 0`) | RRL on (100/s, slip 2) |",
        "| --- | ---: | ---: |",
        row(f"queries sent ({FLOOD_RATE:,}/s)", lambda f: f"{f.sent:,}"),
        row("answered in full", lambda f: f"{f.counts['queries_udp'] - f.counts['rrl_limited']:,}"),
        row("slipped (empty, TC=1)", lambda f: f"{f.counts['rrl_slipped']:,}"),
        row("dropped by RRL", lambda f: f"{f.counts['rrl_dropped']:,}"),
        row("dropped, server behind (backlog)", lambda f: f"{f.counts['backlog_dropped']:,}"),
        row("lost before the server (kernel buffers)", lambda f: f"{f.lost:,}"),
        row("DNS bytes back / bytes sent (amplification)", lambda f: f"{f.amplification:.2f} x"),
    ]  # fmt: skip
    setup = (
        "One address (127.0.0.1 with `--rrl-exempt none`, standing for the address a flood "
        "would forge) asks "
        f"`_amp._tcp.jarvis.internal SRV` with EDNS: a {off.query_size}-byte query whose answer, "
        f"{AMP_INSTANCES} instances with their addresses, is {off.answer_size:,} bytes. Counts are "
        "the server's own (`/v1/health`); bytes are DNS payload as the flooder saw it."
    )
    tcp = (
        f"{TCP_HELD:,} idle DNS-over-TCP connections from one address: {kept} held "
        f"(`--dns-tcp-max-per-client` 64), the rest closed at once; a TCP query from "
        f"another address meanwhile: {'answered' if served else 'NOT answered'}."
    )
    return setup + "\n\n" + "\n".join(rows) + "\n\n" + tcp


async def run(quick: bool) -> str:
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    http, dns_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        server = jarvis(http, dns_port, "--data-dir", data, "--store", "memory://")
        try:
            url = f"http://127.0.0.1:{http}"
            wait_http(url + "/v1/health")
            accepted, held_s = await held(http, 300 if quick else 3000)
            progress("held")
            cut_s = await slowloris(http)
            progress("slowloris")
        finally:
            stop(server)
        count = 100 if quick else 1000
        extra = ["--http-max-connections-per-client", str(count + 20)]
        extra += ["--max-waiting-queries", str(count)]
        server = jarvis(http, dns_port, "--data-dir", data, "--store", "memory://", *extra)
        try:
            wait_http(url + "/v1/health")
            per_query_kib, past_cap = await waiting(url, server.pid, count)
            progress("waiting")
        finally:
            stop(server)
    rows = [
        ("idle connections from one address", f"{accepted} of {3000 if not quick else 300} "
         f"accepted (per-client cap 256), all closed after {held_s:.1f} s"),
        ("slowloris (a header byte every 0.5 s)", f"cut after {cut_s:.1f} s (read deadline 10 s)"),
        ("server memory per waiting blocking query", f"{per_query_kib:.1f} KiB"),
        ("a blocking query past --max-waiting-queries", f"HTTP {past_cap}"),
    ]  # fmt: skip
    table = "| probe | result |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    return table + "\n\n" + await dns_probes(quick)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    table = asyncio.run(run(args.quick))
    print(table)
    if not args.quick:
        body = header("Abuse: HTTP and DNS", "scripts/bench/abuse.py") + "\n" + table + "\n"
        write_section("abuse", body)


if __name__ == "__main__":
    main()
