"""DNS benchmark: dnsperf against jarvis-dns and against dnsmasq (C) serving the same
records, in the same run; jarvis-dns with its answer cache off (the hand-encoded miss
path alone); DNS while busy status churns over HTTP (0, 100 and 1,000 flips a second
against 100 services x 10 instances); then jarvis-dns again with 100,000 instances, and
the AXFR of that zone; and BIND 9 as a secondary: how soon after a change it answers it
(NOTIFY, then IXFR), change by change and after a burst.

    .venv/bin/python scripts/bench/dns.py [--seconds 10] [--quick] [--only churn]
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # this file is dns.py: keep dnspython's `dns` first

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _plot
from _common import (
    LOAD_CPU,
    PYTHON,
    SERVER_CPU,
    Perf,
    dnsperf,
    free_port,
    header,
    median,
    pinned,
    require,
    seed_sqlite,
    stop,
    wait_http,
    write_section,
)

ZONE = "jarvis.internal"
ROUNDS = 5  # runs per figure, taken in turn with the figure it is compared with; median
SMALL = 4  # instances of `auth`: an SRV answer with glue that fits 512 bytes
MIXES = {
    "SRV": [f"_auth._tcp.{ZONE} SRV"],
    "A": [f"auth.{ZONE} A"],
    "TXT": [f"1._auth._tcp.{ZONE} TXT"],
    "NXDOMAIN": [f"nope.{ZONE} A"],
    "mix": [
        f"_auth._tcp.{ZONE} SRV",
        f"auth.{ZONE} A",
        f"1._auth._tcp.{ZONE} TXT",
        f"nope.{ZONE} A",
    ],
}


def instances(n: int, types: int) -> list[tuple[str, int, str, int, dict[str, object]]]:
    per = max(1, n // types)
    return [
        (
            f"svc-{i // per}" if types > 1 else "auth",
            i + 1,
            f"10.0.{(i >> 8) & 255}.{i & 255}",
            5001 + i % 60000,
            {"version": "1.0"},
        )
        for i in range(n)
    ]


def dnsmasq_args(port: int, fleet: list[tuple[str, int, str, int, dict[str, object]]]) -> list[str]:
    args = [
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        f"--port={port}",
        f"--local=/{ZONE}/",
        "--cache-size=10000",
        "--user=root",
        "--pid-file=",
    ]
    for svc, iid, host, port_, meta in fleet:
        target = f"{iid}.{svc}.{ZONE}"
        args.append(f"--srv-host=_{svc}._tcp.{ZONE},{target},{port_},0,100")
        args.append(f"--host-record={target},{host}")
        args.append(f"--host-record={svc}.{ZONE},{host}")
        txt = ",".join(f"{k}={v}" for k, v in meta.items()) + ",busy=false,status=active"
        args.append(f"--txt-record={iid}._{svc}._tcp.{ZONE},{txt}")
    return args


def wait_dns(port: int) -> None:
    import time

    import dns.message
    import dns.query

    for _ in range(200):
        try:
            dns.query.udp(
                dns.message.make_query(f"auth.{ZONE}", "A"), "127.0.0.1", port=port, timeout=0.2
            )
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"no DNS on port {port}")


def uncached(data: str) -> tuple[subprocess.Popen[bytes], int]:
    """jarvis-dns without its answer cache: every reply encoded from the view."""
    return jarvis(data, "--no-dns-cache")


def jarvis(data: str, *extra: str, http: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "jarvis_dns",
        "serve",
        "--http",
        f"127.0.0.1:{http or free_port()}",
        "--dns",
        f"127.0.0.1:{port}",
        "--data-dir",
        data,
        "--zones-dir",
        data,
        "--log-level",
        "warning",
        "--no-active-checks",
        *extra,
    ]
    proc = subprocess.Popen(
        pinned(SERVER_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_dns(port)
    return proc, port


@dataclass
class Churn:
    asked: int  # flips attempted
    answered: int  # flips answered 2xx
    p50_ms: float
    p99_ms: float


CHURN_CONNECTIONS = 16  # keep-alive connections the flipping client spreads over


def churn(http: int, rate: int, seconds: float, fleet: list[tuple[str, int]]) -> Churn:
    """Flip busy on the fleet's instances in turn, ``rate`` times a second over HTTP,
    for ``seconds``; returns what was asked and answered (run in a thread).

    Raw HTTP/1.1 on keep-alive connections, one request at a time each: a client that
    costs little CPU, since it shares the load core with dnsperf."""
    times: list[float] = []
    asked = 0
    due: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

    def request(svc: str, iid: int, busy: bool) -> bytes:
        body = b'{"busy": true}' if busy else b'{"busy": false}'
        head = (
            f"PUT /v1/services/{svc}/instances/{iid}/status HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    finished = False  # every flip asked: a connection ends once the queue is empty

    async def connection(until: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", http)
        try:
            while time.perf_counter() < until and not (finished and due.empty()):
                try:
                    wire, began = await asyncio.wait_for(due.get(), 0.1)
                except TimeoutError:
                    continue
                writer.write(wire)
                status = await reader.readuntil(b"\r\n")
                size = 0
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        size = int(line.split(b":")[1])
                await reader.readexactly(size)
                if status.split()[1].startswith(b"2"):
                    times.append(time.perf_counter() - began)
        finally:
            writer.close()

    async def main() -> None:
        nonlocal asked, finished
        began = time.perf_counter()
        until = began + seconds + 10.0  # answers still coming count, up to 10 s late
        workers = [asyncio.create_task(connection(until)) for _ in range(CHURN_CONNECTIONS)]
        while (now := time.perf_counter() - began) < seconds:
            while asked < int(now * rate):
                svc, iid = fleet[asked % len(fleet)]
                busy = (asked // len(fleet)) % 2 == 0
                due.put_nowait((request(svc, iid, busy), time.perf_counter()))
                asked += 1
            await asyncio.sleep(0.002)
        finished = True  # each connection ends after its answer in flight
        with contextlib.suppress(TimeoutError):  # answers after `until` do not count
            left = until - time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), left)

    asyncio.run(main())
    ordered = sorted(times) or [float("nan")]
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return Churn(asked, len(times), pick(0.5), pick(0.99))


def churn_runs(seconds: float, rates: list[int]) -> tuple[list[tuple[int, Perf, Churn]], Perf]:
    """dnsperf (SRV and A over 100 services x 10 instances) while busy flips at each
    rate; then the same queries with the answer cache off and no churn."""
    fleet = [
        (f"svc-{s}", s * 10 + i + 1, f"10.1.{s}.{i}", 5001 + i, {"version": "1.0"})
        for s in range(100)
        for i in range(10)
    ]
    queries = [q for s in range(100) for q in (f"_svc-{s}._tcp.{ZONE} SRV", f"svc-{s}.{ZONE} A")]
    rows = []
    with tempfile.TemporaryDirectory() as data:
        seed_sqlite(data, fleet)
        http = free_port()
        server, port = jarvis(data, http=http)
        try:
            wait_http(f"http://127.0.0.1:{http}/v1/health")
            targets = [(svc, iid) for svc, iid, *_ in fleet]
            runs: dict[int, list[tuple[Perf, Churn]]] = {rate: [] for rate in rates}
            for _ in range(ROUNDS):  # the rates in turn, ROUNDS times: the median counts
                for rate in rates:
                    result: list[Churn] = []
                    flipper = threading.Thread(
                        target=lambda r=result, n=rate: r.append(churn(http, n, seconds, targets))
                    )
                    if rate:
                        flipper.start()
                    perf = dnsperf(port, queries, seconds)
                    if rate:
                        flipper.join()
                    runs[rate].append((perf, result[0] if result else Churn(0, 0, 0.0, 0.0)))
            for rate in rates:
                rows.append((rate, *median(runs[rate], lambda run: run[0].qps)))
        finally:
            stop(server)
        no_cache_server, port = uncached(data)
        try:
            no_cache = dnsperf(port, queries, seconds)
        finally:
            stop(no_cache_server)
    return rows, no_cache


def churn_table(rows: list[tuple[int, Perf, Churn]], no_cache: Perf, load: str) -> str:
    base = rows[0][1].qps
    lines = [
        "| flips/s asked | answered | flip p50 ms | flip p99 ms | DNS q/s | lost | vs no churn |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rate, perf, flips in rows:
        lines.append(
            f"| {rate:,} | {flips.answered:,} of {flips.asked:,} | {flips.p50_ms:.1f} | "
            f"{flips.p99_ms:.1f} | {perf.qps:,.0f} | {perf.lost} | {perf.qps / base:.2f} |"
        )
    lines += [
        "",
        f"The same SRV and A queries with the answer cache off (every reply encoded by hand "
        f"from the view; `--no-dns-cache`), no churn: {no_cache.qps:,.0f} q/s, "
        f"{no_cache.lost} lost.",
        "",
        f"Machine load while measuring (1/5/15-minute load average, 2 cores): {load}.",
    ]
    return "\n".join(lines)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def alternated(port: int, ref_port: int, queries: list[str], seconds: float) -> tuple[Perf, Perf]:
    """The median run of each of two servers, ROUNDS runs each, taken in turn: on a
    shared machine one run moves by 10-30%, and both servers meet the same moments."""
    ours, theirs = [], []
    for _ in range(ROUNDS):
        ours.append(dnsperf(port, queries, seconds / 2))
        theirs.append(dnsperf(ref_port, queries, seconds / 2))
    return median(ours, qps), median(theirs, qps)


def qps(run: Perf) -> float:
    return run.qps


def run(seconds: float, big: int) -> str:
    fleet = instances(SMALL, 1)
    rows = []
    with tempfile.TemporaryDirectory() as small, tempfile.TemporaryDirectory() as large:
        seed_sqlite(small, fleet)
        ours, port = jarvis(small)
        ref_port = free_port()
        ref = subprocess.Popen(
            pinned(SERVER_CPU, dnsmasq_args(ref_port, fleet)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_dns(ref_port)
            for name, queries in MIXES.items():
                rows.append((name, *alternated(port, ref_port, queries, seconds)))
        finally:
            stop(ours)
            stop(ref)
        # The same A queries through dnslib alone: what the fast path saves.
        slow, slow_port = jarvis(small, "--no-fast-path")
        try:
            dnslib_a = dnsperf(slow_port, MIXES["A"], seconds)
        finally:
            stop(slow)
        # The mix with the answer cache off: every reply encoded by hand (the miss path).
        bare, uncached_port = uncached(small)
        try:
            no_cache_mix = dnsperf(uncached_port, MIXES["mix"], seconds)
        finally:
            stop(bare)
        big_fleet = instances(big, big // 100)
        seed_sqlite(large, big_fleet)
        ours, port = jarvis(large, *XFR_ARGS)
        try:
            types = big // 100
            queries = [
                q
                for k in range(0, types, max(1, types // 50))
                for q in (
                    f"_svc-{k}._tcp.{ZONE} SRV",
                    f"svc-{k}.{ZONE} A",
                    f"{k * 100 + 1}._svc-{k}._tcp.{ZONE} TXT",
                )
            ]
            at_size = dnsperf(port, queries, seconds)
            transfers = [axfr(port) for _ in range(2)]
        finally:
            stop(ours)
    small_mix = rows[-1][1]
    lines = [
        "| query | jarvis-dns q/s | lost | dnsmasq q/s | lost | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, mine, theirs in rows:
        lines.append(
            f"| {name} | {mine.qps:,.0f} | {mine.lost} | {theirs.qps:,.0f} | {theirs.lost} | "
            f"{mine.qps / theirs.qps:.2f} |"
        )
    lines.append("")
    lines.append(
        f"The A queries with `--no-fast-path` (every query parsed and packed by dnslib): "
        f"{dnslib_a.qps:,.0f} q/s, {dnslib_a.lost} lost."
    )
    lines.append("")
    lines.append(
        f"The mix with the answer cache off (`--no-dns-cache`: every reply encoded by "
        f"hand from the view, no dnslib): {no_cache_mix.qps:,.0f} q/s, {no_cache_mix.lost} "
        f"lost ({no_cache_mix.qps / small_mix.qps:.2f} x the cached mix)."
    )
    lines.append("")
    lines.append(
        f"With {big:,} instances across {big // 100:,} service types (SRV/A/TXT over 50 types, "
        f"100-instance answers truncated to fit 512 bytes): {at_size.qps:,.0f} q/s, "
        f"{at_size.lost} lost — {at_size.qps / small_mix.qps:.2f} x the small mix."
    )
    lines.append("")
    (cold, records, messages, size), (warm, *_) = transfers
    lines.append(
        f"AXFR of that zone (`dig -y ... AXFR`, TSIG on every message): {records:,} records "
        f"in {messages:,} messages ({size / 1e6:.1f} MB) in {cold:.2f} s, again {warm:.2f} s."
    )
    return "\n".join(lines)


# -- zone transfers and NOTIFY --------------------------------------------------

XFR_SECRET = "YmVuY2htYXJrIHRyYW5zZmVyIGtleSwgMzIgYnl0ZXM="
XFR_ARGS = ("--tsig-key", f"xfr:hmac-sha256:{XFR_SECRET}", "--transfer-allow", "key:xfr")
NOTIFY_SAMPLES = 40
NOTIFY_SPACING_S = 1.2  # past the 1 s coalescing window: each NOTIFY leaves at once
BURST = 1000  # registrations in a burst, then: how long until the secondary has them all
NAMED = shutil.which("named") or "/usr/sbin/named"


def axfr(port: int) -> tuple[float, int, int, int]:
    """Seconds, records, messages and bytes of a signed AXFR of the registry zone."""
    argv = ["dig", "-y", f"hmac-sha256:xfr:{XFR_SECRET}", "@127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    out = subprocess.run(
        [*argv, ZONE, "AXFR", "+noall", "+stats"], capture_output=True, text=True, check=True
    ).stdout
    took = time.monotonic() - started
    found = re.search(r"XFR size: (\d+) records \(messages (\d+), bytes (\d+)\)", out)
    if found is None:
        raise RuntimeError(f"AXFR failed: {out}")
    records, messages, size = (int(g) for g in found.groups())
    return took, records, messages, size


def named(directory: str, port: int, primary: int) -> subprocess.Popen[bytes]:
    """BIND 9 as a secondary of jarvis-dns on loopback, as the README configures it."""
    conf = Path(directory) / "named.conf"
    conf.write_text(
        f"""options {{
    directory "{directory}"; pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key"; listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; notify no;
}};
controls {{ }};
key "xfr" {{ algorithm hmac-sha256; secret "{XFR_SECRET}"; }};
zone "{ZONE}" {{
    type secondary; primaries port {primary} {{ 127.0.0.1 key xfr; }}; file "zone.db";
    max-records-per-type 0;
}};
"""
    )
    argv = [NAMED, "-g", "-4", "-n", "1", "-c", str(conf)]
    return subprocess.Popen(
        pinned(LOAD_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _soa_serial(port: int) -> int | None:
    import dns.message
    import dns.query

    query = dns.message.make_query(ZONE, "SOA")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except Exception:
        return None
    return int(reply.answer[0][0].serial) if reply.answer else None


def _until(check: Callable[[], bool], timeout: float = 30.0) -> float:
    """Seconds until check() holds, asking every millisecond or so."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError("the secondary did not follow")
        time.sleep(0.001)
    return time.monotonic() - started


@dataclass
class Follow:
    samples: int
    p50_ms: float
    p99_ms: float
    burst_sent_s: float  # BURST registrations, one after the other over HTTP
    burst_s: float  # after the last of them was answered, until BIND had them all


def notify_latency(samples: int) -> Follow:
    """Busy flips over HTTP, NOTIFY_SPACING_S apart; each timed from the HTTP answer to
    BIND answering the new SRV priority. Then a burst of registrations."""
    import httpx

    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as bind_dir:
        http, secondary = free_port(), free_port()
        ours, port = jarvis(
            data, "--store", "memory://", *XFR_ARGS, "--notify", f"127.0.0.1:{secondary}",
            http=http,
        )  # fmt: skip
        bind = named(bind_dir, secondary, port)
        try:
            url = f"http://127.0.0.1:{http}"
            _until(lambda: _soa_serial(secondary) == 0)
            with httpx.Client(base_url=url, timeout=10) as client:
                body = {"service_type": "lat", "instance_id": 1, "host": "10.0.0.1", "port": 80}
                client.post("/v1/instances", json={**body, "ttl_s": 3600}).raise_for_status()
                latencies = []
                for k in range(samples):
                    time.sleep(NOTIFY_SPACING_S)
                    reply = client.put(
                        "/v1/services/lat/instances/1/status", json={"busy": k % 2 == 0}
                    )
                    index = int(reply.headers["X-Jarvis-Index"])
                    latencies.append(_until(lambda i=index: _soa_serial(secondary) == i))
                started = time.monotonic()
                for i in range(BURST):
                    spec = {**body, "instance_id": 100 + i, "ttl_s": 3600}
                    client.post("/v1/instances", json=spec).raise_for_status()
                sent = time.monotonic() - started
                index = int(client.get("/v1/health").json()["index"])
                burst = _until(lambda: _soa_serial(secondary) == index)
        finally:
            stop(bind)
            stop(ours)
    latencies.sort()
    return Follow(
        samples,
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        sent,
        burst,
    )


def follow_text(follow: Follow) -> str:
    return (
        f"BIND 9 ({NAMED}) as a secondary with the README's stanza (TSIG key, NOTIFY from "
        f"`--notify`): {follow.samples} busy flips over HTTP, {NOTIFY_SPACING_S} s apart "
        "(past the one-a-second NOTIFY coalescing, so each NOTIFY leaves at once), each timed "
        "from the HTTP answer until BIND serves the new serial (NOTIFY, SOA query, IXFR): "
        f"p50 {follow.p50_ms:.0f} ms, p99 {follow.p99_ms:.0f} ms. Then {BURST:,} registrations "
        f"sent one after the other ({follow.burst_sent_s:.1f} s): BIND served all of them "
        f"{follow.burst_s * 1000:.0f} ms after the last was answered."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="1 s runs, 2,000 instances")
    parser.add_argument(
        "--only",
        choices=["churn", "no-churn"],
        help="only the churn runs, or only their no-churn cached and uncached figures "
        "(printed; run from another checkout's folder to measure that checkout's server)",
    )
    args = parser.parse_args()
    require("dnsperf", "dnsmasq", "named", "dig")
    seconds, big = (1, 2000) if args.quick else (args.seconds, args.instances)
    if (os.cpu_count() or 1) > 1:  # the churning client shares the load core with dnsperf
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    before = load_average()
    if args.only == "no-churn":
        rows, no_cache = churn_runs(seconds, [0])
        cached = rows[0][1]
        print(f"cached {cached.qps:,.0f} q/s ({cached.lost} lost); answer cache off "
              f"{no_cache.qps:,.0f} q/s ({no_cache.lost} lost); load {load_average()}")  # fmt: skip
        return
    rows, no_cache = churn_runs(seconds, [0, 100, 1000])
    churned = churn_table(rows, no_cache, f"{before} before, {load_average()} after")
    if args.only == "churn":
        print(churned)
        return
    table = run(seconds, big)
    follow = notify_latency(5 if args.quick else NOTIFY_SAMPLES)
    command = "scripts/bench/dns.py" + (" --quick" if args.quick else "")
    text = header("DNS: jarvis-dns against dnsmasq", command) + (
        f"\ndnsperf ({seconds} s each, 8 clients, 200 outstanding) pinned to core {LOAD_CPU}; "
        f"each server pinned to core {SERVER_CPU}. dnsmasq serves the same {SMALL} `auth` "
        "instances as `--srv-host`, `--host-record` and `--txt-record`, with "
        f"`--local=/{ZONE}/` for NXDOMAIN. jarvis-dns asks for a 4 MiB UDP receive buffer "
        "(capped by net.core.rmem_max); dnsmasq keeps the kernel default (208 KiB), which "
        "holds only ~200 queued datagrams, so its few lost queries are bursts it dropped. "
        f"The table against dnsmasq gives, for each server and query mix, the median of "
        f"{ROUNDS} runs of {seconds / 2:g} s taken in turn with the other server's (one run "
        "moves by 10-30% on this shared machine)."
        f"\n\n{table}"
        "\n\n### While busy status churns\n\n"
        "100 services x 10 instances; dnsperf asks SRV and A of all of them (as above) "
        "while a client on the load core flips instances busy and idle over HTTP "
        f"(`PUT /v1/services/{{svc}}/instances/{{id}}/status`, raw HTTP/1.1 on "
        f"{CHURN_CONNECTIONS} keep-alive connections), "
        "round robin over the fleet, at the asked rate. jarvis-dns answers both on its one "
        f"core. The rates ran in turn, {ROUNDS} times; each row is its rate's median run."
        f"\n\n{churned}"
        f"\n\n### A secondary following the registry\n\n{follow_text(follow)}"
    )
    if not args.quick:
        rates, perfs = [r for r, _, _ in rows], [perf.qps for _, perf, _ in rows]
        text += "\n\n" + _plot.dns_against_churn(rates, perfs, no_cache.qps)
    print(text)
    if not args.quick:
        write_section("dns", text)


if __name__ == "__main__":
    main()
