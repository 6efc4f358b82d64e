"""HTTP benchmark: heartbeats, discovers and registrations per second with wrk, each
beside a bare aiohttp handler doing the same JSON parse, in the same run.

Each side's run is cut in SLICES pieces taken in turn with the other's (ABBA...): a
shared VM's pace drifts by a third within a minute, and two 10 s runs one after the
other put that drift into the ratio.

    .venv/bin/python scripts/bench/http.py [--seconds 10] [--quick]
"""

from __future__ import annotations

import sys

# This file is named http.py (and its sibling dns.py): move its folder behind the
# standard library and site-packages so `http` and `dns` still mean the real packages.
sys.path.append(sys.path.pop(0))

import argparse
import math
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _plot
import httpx
from _common import (
    LOAD_CPU,
    PYTHON,
    CpuUse,
    DnsProbe,
    Latency,
    WrkResult,
    cpu_use,
    free_port,
    header,
    jarvis,
    lua,
    require,
    start,
    stop,
    wait_http,
    write_section,
    wrk,
)

TYPES = 100  # heartbeats spread over 100 service types, like a real fleet
SLICES = 4  # pieces of each side's run, taken in turn: ours, bare, bare, ours, ...
RUN_IDS = 10**7  # instance ids each register run may use

REGISTER_LUA = """
counter = @START@  -- each run of the flood registers instances of its own
request = function()
  counter = counter + 1
  local body = string.format('{"service_type":"bench-%d","instance_id":%d,'
    .. '"host":"127.0.0.1","port":%d,"metadata":{"version":"1.0","tags":["a","b"]}}',
    counter % @TYPES@, counter, 1024 + counter % 60000)
  return wrk.format("POST", "/v1/instances", {["Content-Type"]="application/json"}, body)
end
"""

HEARTBEAT_LUA = """
counter = 0
request = function()
  counter = counter + 1
  -- ids 2..@PER@+1 of each register run (wrk ran its script once unsent: id 1 never came)
  local id = (counter % @RUNS@) * @RUN_IDS@ + math.floor(counter / @RUNS@) % @PER@ + 2
  local path = string.format("/v1/services/bench-%d/instances/%d/heartbeat", id % @TYPES@, id)
  return wrk.format("PUT", path, {["Content-Type"]="application/json"},
    '{"busy":false,"metrics":{"load":12}}')
end
"""

DISCOVER_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"service_type":"bench-%d","requirements":'
    .. '{"version":"1.0","busy":false}}', counter % @TYPES@)
  return wrk.format("POST", "/v1/discover", {["Content-Type"]="application/json"}, body)
end
"""


Cpu = dict[str, tuple[CpuUse, CpuUse]]


def measured(
    proc: subprocess.Popen[bytes], url: str, script: str, seconds: float
) -> tuple[WrkResult, CpuUse]:
    """One wrk run and the CPU the server spent on it."""
    before = cpu_use(proc.pid)
    result = wrk(url, script, seconds)
    return result, cpu_use(proc.pid) - before


Side = tuple[subprocess.Popen[bytes], str]  # a server and its URL


def in_turns(
    ours: Side,
    ref: Side,
    script: Callable[[int], str],
    each: int,
    slices: int,
    dns: int | None = None,
) -> Paired:
    """Both sides, `slices` runs each of `each` seconds, in the order ours, ref, ref,
    ours, ...; script(n) is the n-th run's wrk script. With `dns`, our server's
    event-loop lag during its own runs."""
    runs: dict[int, list[tuple[WrkResult, CpuUse]]] = {0: [], 1: []}
    probes: list[DnsProbe] = []
    for turn in range(slices):
        for side in (0, 1) if turn % 2 == 0 else (1, 0):
            proc, url = (ours, ref)[side]
            if side == 0 and dns is not None:
                with DnsProbe(dns) as probe:
                    runs[side].append(measured(proc, url, script(turn), each))
                probes.append(probe)
            else:
                runs[side].append(measured(proc, url, script(turn), each))
    (ours_run, ours_cpu), (ref_run, ref_cpu) = (combined(runs[0]), combined(runs[1]))
    return Paired(
        (ours_run, ref_run),
        (ours_cpu, ref_cpu),
        DnsProbe.merged(probes) if probes else None,
        [r.requests for r, _ in runs[0]],
    )


@dataclass
class Paired:
    results: tuple[WrkResult, WrkResult]  # ours, the reference's
    cpu: tuple[CpuUse, CpuUse]
    lag: Latency | None  # with a DNS probe
    ours_requests: list[int]  # answered in each of our runs


def combined(runs: list[tuple[WrkResult, CpuUse]]) -> tuple[WrkResult, CpuUse]:
    """Slices of equal length as one run: the mean rate, and at each percentile the
    slowest slice's latency, an upper bound of the whole's (if no slice has more than
    1% of its requests slower than x, neither has the whole); wrk's output holds no
    more of the distribution to merge."""
    results = [r for r, _ in runs]
    percentiles = {
        p: max(r.percentiles.get(p, 0.0) for r in results) for p in results[0].percentiles
    }
    result = WrkResult(
        sum(r.rps for r in results) / len(results),
        max(r.p99_ms for r in results),
        sum(r.errors for r in results),
        sum(r.requests for r in results),
        percentiles,
    )
    used = CpuUse(sum(u.main for _, u in runs), sum(u.others for _, u in runs))
    return result, used


def run(
    each: int, slices: int, lag: dict[str, Latency], cpu: Cpu
) -> dict[str, tuple[WrkResult, WrkResult]]:
    results: dict[str, tuple[WrkResult, WrkResult]] = {}

    bare_port = free_port()
    # -P: keep this folder (with its http.py) off sys.path of the reference server.
    bare = start([PYTHON, "-P", str(Path(__file__).parent / "bare_http.py"), str(bare_port)])
    http, dns = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        server = jarvis(http, dns, "--data-dir", data, "--zones-dir", data, "--no-active-checks")
        try:
            wait_http(f"http://127.0.0.1:{bare_port}/v1/health")
            wait_http(f"http://127.0.0.1:{http}/v1/health")
            url, ref_url = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{bare_port}"

            def both(
                name: str, script: Callable[[int], str], probe_dns: int | None = None
            ) -> Paired:
                paired = in_turns((server, url), (bare, ref_url), script, each, slices, probe_dns)
                results[name], cpu[name] = paired.results, paired.cpu
                if paired.lag is not None:
                    lag[name] = paired.lag
                return paired

            # The event loop's lag while registrations flood: a DNS query every 5 ms.
            # Run t registers ids from t * RUN_IDS + 1 on: none is a repeat (a heartbeat).
            register = lambda turn: lua(REGISTER_LUA, types=TYPES, start=turn * RUN_IDS)  # noqa: E731
            registered = both("register", register, probe_dns=dns).ours_requests
            n = httpx.get(url + "/v1/health").json()["instances"]
            # The first `per` ids of each run: the last registrations wrk had in flight
            # when a run stopped may never have been sent, and a heartbeat for them would
            # be a fair 404.
            per = max(1, min(registered) - 100)
            heartbeat = lua(HEARTBEAT_LUA, per=per, runs=slices, run_ids=RUN_IDS, types=TYPES)
            both("heartbeat", lambda _: heartbeat)
            both("discover", lambda _: lua(DISCOVER_LUA, types=TYPES))
            results["_instances"] = (WrkResult(n, 0, 0), WrkResult(0, 0, 0))
        finally:
            stop(server)
            stop(bare)
    return results


def per_request(use: CpuUse, result: WrkResult) -> tuple[float, float]:
    """Microseconds of CPU per request: the event loop's, the other threads'."""
    n = max(1, result.requests)
    return use.main / n * 1e6, use.others / n * 1e6


def report(
    results: dict[str, tuple[WrkResult, WrkResult]],
    lag: dict[str, Latency],
    cpu: Cpu,
    command: str,
    each: int,
    slices: int,
) -> str:
    n = int(results.pop("_instances")[0].rps)
    lines = [
        header("HTTP: heartbeat, discover, register", command),
        f"wrk, 1 thread, 64 connections, {slices} runs of {each} s for each side, taken "
        "in turn with the reference (ours, bare, bare, ours, "
        "...: both meet the same drift of a shared machine; p99 and the plot's "
        "percentiles are the slowest run's, an upper bound of the whole's), "
        f"pinned to core {LOAD_CPU}; "
        "the server (SQLite store, uvloop) and the reference (bare aiohttp handler doing the "
        f"same JSON parse, uvloop) on core 0. Heartbeats rotate over the {n} instances the "
        f"register run created, across {TYPES} service types; discover asks for "
        '`{"version": "1.0", "busy": false}` in one type.',
        "",
        "| operation | jarvis-dns req/s | p99 | bare aiohttp req/s | p99 | ratio | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (ours, ref) in results.items():
        lines.append(
            f"| {name} | {ours.rps:,.0f} | {ours.p99_ms:.1f} ms | {ref.rps:,.0f} | "
            f"{ref.p99_ms:.1f} ms | {ours.rps / ref.rps:.2f} | {ours.errors} |"
        )
    lines += [
        "",
        "CPU per request (user + system from /proc, so the steadier figure when other load "
        "shares the machine): the server's event-loop thread and its other threads (the "
        "SQLite writer), against the bare handler.",
        "",
        "| operation | jarvis-dns µs/request | event loop | other threads | bare µs/request "
        "| ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (ours_cpu, ref_cpu) in cpu.items():
        main, others = per_request(ours_cpu, results[name][0])
        ref = sum(per_request(ref_cpu, results[name][1]))
        lines.append(
            f"| {name} | {main + others:,.0f} | {main:,.0f} | {others:,.0f} | {ref:,.0f} | "
            f"{ref / (main + others):.2f} |"
        )
    for name, probe in lag.items():
        lines += [
            "",
            f"Event-loop lag during the {name} flood: a DNS SOA query every 5 ms from the "
            f"load core, answered p50 {probe.p50_ms:.2f} ms, p99 {probe.p99_ms:.2f} ms, "
            f"max {probe.max_ms:.1f} ms ({probe.answered} of {probe.sent} answered).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help=f"per side and operation, in {SLICES} runs"
    )
    parser.add_argument("--quick", action="store_true", help="1 s each: keeps the script working")
    args = parser.parse_args()
    require("wrk")
    seconds = 1.0 if args.quick else args.seconds
    lag: dict[str, Latency] = {}
    cpu: Cpu = {}
    slices = 1 if args.quick else SLICES
    each = max(1, math.ceil(seconds / slices))  # wrk takes whole seconds
    results = run(each, slices, lag, cpu)
    command = "scripts/bench/http.py" + (" --quick" if args.quick else "")
    text = report(results, lag, cpu, command, each, slices)
    if not args.quick:
        kinds = ("register", "heartbeat")
        text += "\n\n" + _plot.latency_percentiles({k: results[k][0].percentiles for k in kinds})
    print(text)
    if not args.quick:
        write_section("http", text)


if __name__ == "__main__":
    main()
