"""Abuse benchmark, HTTP side (issue 12): the earlier probes rerun against `serve`.

    .venv/bin/python scripts/bench/abuse.py [--quick]

* held: 3,000 idle connections from one address: how many the server accepted (the
  per-client cap), and how long the accepted ones were held before it closed them;
* slowloris: a request whose header trickles in a byte every 0.5 s: when it was cut;
* waiting queries: server RSS per blocking query held (1,000 of them), and what the
  next query past --max-waiting-queries gets;
The client's side (a byte-a-second server, a 300 MB body) is measured by
tests/test_client_hardening.py.

The DNS side (amplification with RRL, per-source TCP) is measured by the DNS owner.
Writes its section of BENCHMARKS.md (not with --quick).
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # keep this folder behind the standard library

import argparse
import asyncio
import contextlib
import resource
import tempfile
import time
from pathlib import Path

import httpx
from _common import free_port, header, jarvis, stop, wait_http, write_section


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


async def run(quick: bool) -> str:
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    http, dns = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        server = jarvis(http, dns, "--data-dir", data, "--store", "memory://")
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
        server = jarvis(http, dns, "--data-dir", data, "--store", "memory://", *extra)
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
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    table = asyncio.run(run(args.quick))
    print(table)
    if not args.quick:
        body = header("Abuse (HTTP side)", "scripts/bench/abuse.py") + "\n" + table + "\n"
        write_section("abuse", body)


if __name__ == "__main__":
    main()
