"""Scale and freshness: 100,000 instances on one node.

Registers N instances across N/100 service types, then reports registration time, RSS,
restart time from SQLite, heartbeat and DNS figures at that size, and propagation:
registration -> next DNS answer, registration -> blocking-query watcher woken.

    .venv/bin/python scripts/bench/scale.py [--instances 100000] [--quick]
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # keep stdlib/site `http` and `dns` ahead of siblings

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import dns.message
import dns.query
import dns.rdatatype
from _common import (
    PYTHON,
    Perf,
    WrkResult,
    dnsperf,
    free_port,
    header,
    pinned,
    wait_http,
    write_section,
    wrk,
)

TYPES_PER_100 = 100  # instances per service type
CONCURRENCY = 64


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(data: str, http: int, dnsport: int) -> subprocess.Popen[bytes]:
    argv = [PYTHON, "-m", "jarvis_dns", "serve", "--http", f"127.0.0.1:{http}"]
    argv += ["--dns", f"127.0.0.1:{dnsport}", "--data-dir", data, "--zones-dir", data]
    argv += ["--log-level", "warning", "--no-active-checks"]
    return subprocess.Popen(pinned("0", argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def body(i: int) -> dict[str, object]:
    return {
        "service_type": f"svc-{i // TYPES_PER_100}",
        "instance_id": i,
        "host": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "port": 1024 + i % 60000,
        "metadata": {"version": "1.0", "tags": ["a"]},
        "ttl_s": 3600,
    }


async def register_all(url: str, n: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                async with s.post(url + "/v1/instances", json=body(i)) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start


HEARTBEAT_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local id = (counter * 7919) % @N@  -- a stride through the whole fleet
  local path = string.format("/v1/services/svc-%d/instances/%d/heartbeat", math.floor(id / 100), id)
  return wrk.format("PUT", path, {["Content-Type"]="application/json"},
    '{"busy":false,"metrics":{"load":12}}')
end
"""


def heartbeats(url: str, n: int, seconds: float) -> WrkResult:
    """wrk on the other core, striding through the whole fleet."""
    return wrk(url, HEARTBEAT_LUA.replace("@N@", str(n)), seconds)


def dns_ask(port: int, name: str, qtype: str = "SRV") -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)


def dns_rate(port: int, n_types: int, seconds: float) -> Perf:
    """dnsperf over SRV, A and TXT names spread across the service types."""
    step = max(1, n_types // 50)
    queries = [
        q
        for k in range(0, n_types, step)
        for q in (
            f"_svc-{k}._tcp.jarvis.internal SRV",
            f"svc-{k}.jarvis.internal A",
            f"{k * TYPES_PER_100}._svc-{k}._tcp.jarvis.internal TXT",
        )
    ]
    return dnsperf(port, queries, seconds)


async def propagation(url: str, port: int, samples: int) -> tuple[list[float], list[float]]:
    """ms from the HTTP response to a DNS answer that shows the instance, and from the
    registration request to a blocking query's wake-up."""
    to_dns, to_watch = [], []
    async with aiohttp.ClientSession() as s:
        for k in range(samples):
            svc = f"fresh-{k}"
            async with s.get(f"{url}/v1/services/{svc}") as r:
                index = r.headers["X-Jarvis-Index"]
            woke: list[float] = []

            async def watch(svc: str = svc, index: str = index, woke: list[float] = woke) -> None:
                async with s.get(f"{url}/v1/services/{svc}?index={index}&wait=10s") as r:
                    await r.read()
                    woke.append(time.perf_counter())

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.005)
            sent = time.perf_counter()
            async with s.post(f"{url}/v1/instances", json={**body(k), "service_type": svc}) as r:
                await r.read()
            answered = time.perf_counter()
            # Asked inline (no thread hop): the very next query after the HTTP answer.
            reply = dns_ask(port, f"_{svc}._tcp.jarvis.internal")
            assert reply.answer, f"{svc} not in the next DNS answer"
            to_dns.append((time.perf_counter() - answered) * 1000)
            await watcher
            to_watch.append((woke[0] - sent) * 1000)
    return to_dns, to_watch


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def run(n: int, seconds: float, samples: int) -> str:
    http, dnsport = free_port(), free_port()
    url = f"http://127.0.0.1:{http}"
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as data:
        server = start_server(data, http, dnsport)
        try:
            wait_http(url + "/v1/health")
            base_rss = rss_mb(server.pid)
            took = asyncio.run(register_all(url, n))
            rows.append(("register", f"{n:,} instances in {took:.1f} s", f"{n / took:,.0f}/s"))
            rss = rss_mb(server.pid)
            rows.append(("RSS", f"{rss:.0f} MB ({base_rss:.0f} MB empty)", "goal <= 300 MB"))
            beats = heartbeats(url, n, seconds)
            note = f"wrk, 64 connections; p99 {beats.p99_ms:.1f} ms; {beats.errors} non-2xx"
            rows.append(("heartbeats at size", f"{beats.rps:,.0f}/s", note))
            perf = dns_rate(dnsport, n // TYPES_PER_100, seconds)
            note = f"dnsperf, SRV/A/TXT over 50 types; {perf.lost} lost"
            rows.append(("DNS at size", f"{perf.qps:,.0f} q/s", note))
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            start = time.perf_counter()
            server = start_server(data, http, dnsport)
            wait_http(url + "/v1/health", timeout=120)
            restart = time.perf_counter() - start
            rows.append(("restart from SQLite", f"{restart:.2f} s to serve {n:,}", "goal <= 5 s"))
            to_dns, to_watch = asyncio.run(propagation(url, dnsport, samples))
            rows.append(("HTTP answer -> DNS answer", f"p99 {p99(to_dns):.2f} ms", "goal <= 5 ms"))
            rows.append(
                ("register -> watcher woken", f"p99 {p99(to_watch):.2f} ms", "goal <= 50 ms")
            )
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
    lines = ["| what | measured | note |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="1,000 instances, 1 s runs")
    args = parser.parse_args()
    n, seconds, samples = (1000, 1.0, 20) if args.quick else (args.instances, args.seconds, 200)
    table = run(n, seconds, samples)
    command = "scripts/bench/scale.py" + (" --quick" if args.quick else "")
    text = header(f"Scale: {n:,} instances on one node", command) + (
        f"\nServer pinned to core 0 (SQLite store, uvloop); clients on the other core. "
        f"{n // TYPES_PER_100:,} service types of {TYPES_PER_100} instances.\n\n{table}"
    )
    print(text)
    if not args.quick:
        write_section("scale", text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
