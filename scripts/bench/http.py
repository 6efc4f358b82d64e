"""HTTP benchmark: heartbeats, discovers and registrations per second with wrk, each
beside a bare aiohttp handler doing the same JSON parse, in the same run.

    .venv/bin/python scripts/bench/http.py [--seconds 10] [--quick]
"""

from __future__ import annotations

import sys

# This file is named http.py (and its sibling dns.py): move its folder behind the
# standard library and site-packages so `http` and `dns` still mean the real packages.
sys.path.append(sys.path.pop(0))

import argparse
import subprocess
import tempfile
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

REGISTER_LUA = """
counter = 0
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
  local id = counter % @N@ + 2  -- wrk ran the register script once unsent: id 1 never came
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


def run(
    seconds: float, lag: dict[str, Latency], cpu: Cpu
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

            def both(name: str, script: str) -> None:
                ours, ours_cpu = measured(server, url, script, seconds)
                ref, ref_cpu = measured(bare, ref_url, script, seconds)
                results[name], cpu[name] = (ours, ref), (ours_cpu, ref_cpu)

            script = lua(REGISTER_LUA, types=TYPES)
            with DnsProbe(dns) as probe:  # the event loop's lag while registrations flood
                ours, ours_cpu = measured(server, url, script, seconds)
            ref, ref_cpu = measured(bare, ref_url, script, seconds)
            results["register"], cpu["register"] = (ours, ref), (ours_cpu, ref_cpu)
            lag["register"] = probe.result()
            n = httpx.get(url + "/v1/health").json()["instances"]
            # ids 1..n-100: the last registrations wrk had in flight when it stopped may
            # never have been sent, and a heartbeat for them would be a fair 404.
            both("heartbeat", lua(HEARTBEAT_LUA, n=max(1, n - 100), types=TYPES))
            both("discover", lua(DISCOVER_LUA, types=TYPES))
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
    seconds: float,
) -> str:
    n = int(results.pop("_instances")[0].rps)
    lines = [
        header("HTTP: heartbeat, discover, register", command),
        f"wrk, 1 thread, 64 connections, {seconds:g} s each, pinned to core {LOAD_CPU}; "
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
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="1 s each: keeps the script working")
    args = parser.parse_args()
    require("wrk")
    seconds = 1.0 if args.quick else args.seconds
    lag: dict[str, Latency] = {}
    cpu: Cpu = {}
    results = run(seconds, lag, cpu)
    command = "scripts/bench/http.py" + (" --quick" if args.quick else "")
    text = report(results, lag, cpu, command, seconds)
    if not args.quick:
        kinds = ("register", "heartbeat")
        text += "\n\n" + _plot.latency_percentiles({k: results[k][0].percentiles for k in kinds})
    print(text)
    if not args.quick:
        write_section("http", text)


if __name__ == "__main__":
    main()
