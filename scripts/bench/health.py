"""Health-check benchmark: the real HealthMonitor probing a fake fleet over loopback.

    .venv/bin/python scripts/bench/health.py [--instances 10000] [--quick]

A fake-fleet aiohttp process (pinned to core 1) answers GET /health on --ports ports
for all instances; this process (pinned to core 0) runs the change path and the
HealthMonitor with its defaults (256 checks in flight, a fresh connection per probe).
Phase 1 is the real schedule: 10,000 instances at a 60 s interval for one full
interval, so every instance is probed once after its random stagger. Phase 2
compresses the schedule (a shorter interval) to show the headroom. Each phase reports
checks/s against the schedule's rate, lag behind schedule (p50/p99/max), and CPU
used (resource.getrusage). Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import sys

# Keep this folder behind the standard library: aiohttp imports `http`, and a sibling
# script is named http.py.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    LOAD_CPU,
    PYTHON,
    SERVER_CPU,
    header,
    pinned,
    stop,
    write_section,
)

from jarvis_dns.changes import Changes
from jarvis_dns.config import Config
from jarvis_dns.health import HealthMonitor
from jarvis_dns.models import Check, InstanceSpec
from jarvis_dns.store.memory import MemoryStore

HEALTH_BODY = b'{"status":"ok","busy":false}'
TTL_S = 86_400.0  # no heartbeats here: keep TTL expiry out of the measurement


@dataclass
class Phase:
    name: str
    instances: int
    interval_s: float
    seconds: float


@dataclass
class Result:
    phase: Phase
    checks: int
    failed: int
    skipped: int
    lag_p50: float
    lag_p99: float
    lag_max: float
    cpu_s: float
    wall_s: float

    @property
    def rate(self) -> float:
        return self.checks / self.wall_s

    @property
    def target(self) -> float:
        return self.phase.instances / self.phase.interval_s


# -- the fake fleet (a child process) ----------------------------------------------


def serve_fleet(count: int) -> None:
    from aiohttp import web

    async def health(_: web.Request) -> web.Response:
        return web.Response(body=HEALTH_BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for _ in range(count):
            await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        done = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
        ports = ",".join(str(addr[1]) for addr in runner.addresses)
        print(f"ready {ports}", flush=True)
        await done.wait()
        await runner.cleanup()

    _run(main())


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


def start_fleet(count: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Start the fleet on `count` ephemeral ports; returns the process and the ports."""
    argv = [PYTHON, str(Path(__file__).resolve()), "--serve-fleet", str(count)]
    proc = subprocess.Popen(pinned(LOAD_CPU, argv), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    word, _, ports = proc.stdout.readline().decode().partition(" ")
    if word != "ready":
        stop(proc)
        raise RuntimeError("fake fleet did not start")
    return proc, [int(p) for p in ports.split(",")]


# -- the monitor side --------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_phase(phase: Phase, ports: list[int]) -> Result:
    changes = Changes(MemoryStore(), time.time)
    config = Config(store="memory://", check_interval_s=phase.interval_s)
    check = Check(interval_s=phase.interval_s, timeout_s=5.0)
    for i in range(phase.instances):
        port = ports[i % len(ports)]
        await changes.register(
            InstanceSpec("bench", i, "127.0.0.1", port, ttl_s=TTL_S, check=check)
        )
    monitor = HealthMonitor(changes, config)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await monitor.start()
    await asyncio.sleep(phase.seconds)
    status = monitor.status()
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    await monitor.stop()
    return Result(
        phase=phase,
        checks=_int(status["checks_total"]),
        failed=_int(status["checks_failed"]),
        skipped=_int(status["checks_skipped"]),
        lag_p50=_float(status["check_lag_p50_s"]),
        lag_p99=_float(status["check_lag_p99_s"]),
        lag_max=_float(status["check_lag_max_s"]),
        cpu_s=cpu1 - cpu0,
        wall_s=wall1 - wall0,
    )


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


# -- report -------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    rows = [
        "| phase | instances | interval | ran | checks | checks/s (schedule) "
        "| lag p50 / p99 / max | behind a whole interval | failed | CPU (one core) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        p = r.phase
        rows.append(
            f"| {p.name} | {p.instances:,} | {p.interval_s:g} s | {r.wall_s:.1f} s "
            f"| {r.checks:,} | {r.rate:,.0f} ({r.target:,.0f}) "
            f"| {r.lag_p50 * 1000:.1f} / {r.lag_p99 * 1000:.1f} / {r.lag_max * 1000:.0f} ms "
            f"| {r.skipped} | {r.failed} "
            f"| {r.cpu_s:.1f} s = {100 * r.cpu_s / r.wall_s:.0f}% |"
        )
    return "\n".join(rows)


def report(command: str, results: list[Result], ports: int, fleet_cpu: float) -> str:
    first = results[0]
    verdict = (
        "keeps up"
        if first.lag_p99 < 1.0 and first.skipped == 0 and first.failed == 0
        else "FALLS BEHIND"
    )
    return f"""{header("Health checks: 10,000 instances", command)}
The real `HealthMonitor` (default 256 checks in flight, one shared aiohttp session, a
fresh TCP connection per probe as Consul does) probes a fake fleet: one aiohttp process
answering `GET /health` on {ports} loopback ports, pinned to the other core. Each phase
registers the instances, starts the monitor and measures from start: every instance's
first probe lands at a random stagger within one interval, so a phase of one interval
probes each instance once. Lag = when a probe started (slot taken) minus when it was
due. CPU = `getrusage` of the monitor process over the phase.

{table(results)}

The real schedule ({first.phase.instances:,} at {first.phase.interval_s:g} s) {verdict}:
{first.rate:,.0f} checks/s at {100 * first.cpu_s / first.wall_s:.0f}% of one core.
The compressed phase runs the same instances at a shorter interval to show the
headroom. The fake fleet used {fleet_cpu:.1f} s of CPU over the whole run.
"""


def phases(args: argparse.Namespace) -> list[Phase]:
    if args.quick:  # a smoke run that keeps the script working: 2 s, 500 instances
        return [Phase("quick", 500, 1.0, 1.0), Phase("quick compressed", 500, 1.0, 1.0)]
    scale = 1.0
    n = args.instances
    return [
        Phase("real schedule", n, args.interval, args.interval * scale),
        Phase("compressed", n, args.stress_interval, args.stress_seconds * scale),
    ]


async def bench(args: argparse.Namespace, ports: list[int]) -> list[Result]:
    results = []
    for phase in phases(args):
        result = await run_phase(phase, ports)
        print(table([result]).splitlines()[-1], flush=True)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--stress-interval", type=float, default=5.0)
    parser.add_argument("--stress-seconds", type=float, default=20.0)
    parser.add_argument("--ports", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a 2-second smoke run")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--serve-fleet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fleet:
        serve_fleet(int(args.serve_fleet))
        return
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    fleet, ports = start_fleet(4 if args.quick else args.ports)
    try:
        results = _bench_sync(args, ports)
    finally:
        stop(fleet)
    fleet_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = "python scripts/bench/health.py " + " ".join(sys.argv[1:])
    body = report(command.strip(), results, len(ports), fleet_usage.ru_utime + fleet_usage.ru_stime)
    print(body)
    if not args.no_write and not args.quick:
        write_section("health", body)


def _bench_sync(args: argparse.Namespace, ports: list[int]) -> list[Result]:
    results: list[Result] = []

    async def go() -> None:
        results.extend(await bench(args, ports))

    _run(go())
    return results


if __name__ == "__main__":
    main()
