"""HttpCheck and TcpCheck against a real aiohttp server on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from conftest import new_changes

from jarvis_dns.changes import Changes
from jarvis_dns.config import Config
from jarvis_dns.health import CheckResult, HealthMonitor, HttpCheck, Target, TcpCheck
from jarvis_dns.health.limiter import Limiter
from jarvis_dns.models import MAX_CHECK_OUTPUT_BYTES, Check, InstanceSpec, Status


class NoStagger(random.Random):
    """Every check starts at once, so tests need not wait out a random stagger."""

    def uniform(self, a: float, b: float) -> float:
        return a


@dataclass
class Recorder:
    """The recording fake Notifier."""

    results: list[tuple[Target, CheckResult]] = field(default_factory=list)

    async def update(self, target: Target, result: CheckResult) -> None:
        self.results.append((target, result))


@dataclass
class Fleet:
    port: int
    in_flight: int = 0
    peak: int = 0
    mode: str = "ok"


async def health(request: web.Request) -> web.StreamResponse:
    fleet: Fleet = request.app[FLEET]
    fleet.in_flight += 1
    fleet.peak = max(fleet.peak, fleet.in_flight)
    try:
        return await RESPONSES[request.query.get("mode", fleet.mode)]()
    finally:
        fleet.in_flight -= 1


async def _slow() -> web.Response:
    await asyncio.sleep(0.3)
    return web.json_response({"status": "ok"})


async def _now(resp: web.Response) -> web.Response:
    return resp


RESPONSES = {
    "ok": lambda: _now(web.json_response({"status": "ok"})),
    "500": lambda: _now(web.Response(status=500, text="database down")),
    "429": lambda: _now(web.Response(status=429, text="too busy")),
    "busy": lambda: _now(web.json_response({"busy": True, "metrics": {"queue": 9}})),
    "huge": lambda: _now(web.Response(status=500, text="x" * 50_000)),
    "redirect": lambda: _now(web.Response(status=302, headers={"Location": "/health"})),
    "slow": _slow,
}
FLEET: web.AppKey[Fleet] = web.AppKey("fleet", Fleet)


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    state = Fleet(port=0)
    app = web.Application()
    app[FLEET] = state
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def loaded_changes() -> Changes:
    """The one writer over memory://, on the wall clock (the checks run for real)."""
    changes = new_changes(time.time)
    await changes.load()
    return changes


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here now


def http_target(port: int, mode: str = "ok", **check: object) -> Target:
    settings = Check(path=f"/health?mode={mode}", **check)  # type: ignore[arg-type]
    return Target("web", "1", "127.0.0.1", port, settings)


def http_check(target: Target, session: aiohttp.ClientSession, limit: int = 8) -> HttpCheck:
    return HttpCheck(target, Recorder(), Limiter(limit), NoStagger(), session)


@pytest.mark.parametrize(
    ("mode", "passed", "busy", "output"),
    [
        ("ok", True, None, 'HTTP 200: {"status": "ok"}'),
        ("500", False, None, "HTTP 500: database down"),
        ("429", True, True, "HTTP 429: too busy"),
        ("busy", True, True, 'HTTP 200: {"busy": true, "metrics": {"queue": 9}}'),
        ("redirect", False, None, "HTTP 302"),
    ],
)
async def test_http_check_verdicts(
    fleet: Fleet,
    session: aiohttp.ClientSession,
    mode: str,
    passed: bool,
    busy: bool | None,
    output: str,
) -> None:
    result = await http_check(http_target(fleet.port, mode), session).run_once()
    assert (result.passed, result.busy, result.output) == (passed, busy, output)


async def test_http_check_keeps_metrics(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    result = await http_check(http_target(fleet.port, "busy"), session).run_once()
    assert result.metrics == {"queue": 9}


async def test_http_timeout_fails(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    target = http_target(fleet.port, "slow", timeout_s=0.05)
    result = await http_check(target, session).run_once()
    assert (result.passed, result.output) == (False, "timeout after 0.05s")


async def test_http_refused_fails_with_the_reason(session: aiohttp.ClientSession) -> None:
    result = await http_check(http_target(closed_port()), session).run_once()
    assert not result.passed
    assert result.output.startswith("ClientConnectorError")


async def test_http_output_is_capped(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    result = await http_check(http_target(fleet.port, "huge"), session).run_once()
    assert not result.passed
    assert len(result.output.encode()) == MAX_CHECK_OUTPUT_BYTES


async def test_tcp_check(fleet: Fleet) -> None:
    def tcp(port: int) -> TcpCheck:
        target = Target("db", "1", "127.0.0.1", port, Check(type="tcp"))
        return TcpCheck(target, Recorder(), Limiter(8), NoStagger())

    ok = await tcp(fleet.port).run_once()
    assert (ok.passed, ok.output) == (True, f"TCP connect 127.0.0.1:{fleet.port}: ok")
    refused = await tcp(closed_port()).run_once()
    # "failed", not why: refused vs timed out would make the registry a port scanner
    assert not refused.passed and refused.output == "TCP connect failed"


async def test_periodic_check_keeps_the_minimum_interval(
    fleet: Fleet, session: aiohttp.ClientSession
) -> None:
    recorder = Recorder()
    target = http_target(fleet.port, interval_s=0.1)  # below the 1 s minimum
    check = HttpCheck(target, recorder, Limiter(8), NoStagger(), session)
    loop = asyncio.get_running_loop()
    started = loop.time()
    check.start()
    # Probes are due at 0 s and 1 s, not every 0.1 s; a loaded machine may answer late, so
    # wait for the second result rather than a fixed 1.5 s, then see when it came.
    await _until(lambda: len(recorder.results) >= 2, timeout=10)
    second_after = loop.time() - started
    await check.stop()
    assert second_after >= 0.9  # due at 1 s; at 0.1 s intervals it would come at 0.1 s
    assert len(recorder.results) == 2  # and no burst of catch-up probes
    assert all(r.passed and t is target for t, r in recorder.results)


async def test_stagger_spreads_first_probes_over_the_interval(
    fleet: Fleet, session: aiohttp.ClientSession
) -> None:
    class Late(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b * 0.9

    recorder = Recorder()
    check = HttpCheck(http_target(fleet.port), recorder, Limiter(8), Late(), session)
    check.start()
    await asyncio.sleep(0.3)  # the interval is 60 s: the first probe is 54 s away
    await check.stop()
    assert recorder.results == []


async def test_checks_in_flight_are_bounded(fleet: Fleet, session: aiohttp.ClientSession) -> None:
    recorder, limiter = Recorder(), Limiter(2)
    checks = [
        HttpCheck(http_target(fleet.port, "slow"), recorder, limiter, NoStagger(), session)
        for _ in range(6)
    ]
    for check in checks:
        check.start()
    await asyncio.sleep(0.05)
    assert limiter.in_flight == 2
    while len(recorder.results) < 6:
        await asyncio.sleep(0.05)
    for check in checks:
        await check.stop()
    assert fleet.peak == 2
    status = limiter.status()
    assert status["checks_total"] == 6 and status["checks_failed"] == 0
    p99 = limiter.lag_quantile(0.99)
    assert p99 is not None and p99 >= 0.5  # the last two waited for two rounds of 0.3 s


# -- the monitor with real checks ------------------------------------------------


async def test_monitor_probes_and_marks_dead_then_active(fleet: Fleet) -> None:
    changes = await loaded_changes()
    monitor = HealthMonitor(changes, Config(store="memory://"), rng=NoStagger())
    await monitor.start()
    try:
        check = Check(path="/health", interval_s=1, timeout_s=1, failures_before_dead=1)
        fleet.mode = "500"
        await changes.register(InstanceSpec("web", 1, "127.0.0.1", fleet.port, check=check))
        await _until(lambda: changes.view.get("web", 1).status is Status.DEAD)
        assert changes.view.get("web", 1).check_output == "HTTP 500: database down"
        fleet.mode = "busy"
        await _until(lambda: changes.view.get("web", 1).status is Status.ACTIVE, timeout=2.5)
        assert changes.view.get("web", 1).busy is True
        status = monitor.status()
        assert status["checks_scheduled"] == 1 and status["running"] is True
        assert isinstance(status["checks_total"], int) and status["checks_total"] >= 2
    finally:
        await monitor.stop()
    assert monitor.status()["running"] is False


async def test_monitor_does_not_probe_instances_without_a_check(fleet: Fleet) -> None:
    changes = await loaded_changes()
    monitor = HealthMonitor(changes, Config(store="memory://"), rng=NoStagger())
    await monitor.start()
    try:
        await changes.register(InstanceSpec("web", 1, "127.0.0.1", fleet.port))
        await asyncio.sleep(0.1)
        assert monitor.status()["checks_scheduled"] == 0
    finally:
        await monitor.stop()


async def test_no_active_checks_flag(fleet: Fleet) -> None:
    changes = await loaded_changes()
    config = Config(store="memory://", active_checks=False)
    monitor = HealthMonitor(changes, config, rng=NoStagger())
    await monitor.start()
    try:
        await changes.register(InstanceSpec("web", 1, "127.0.0.1", fleet.port, check=Check()))
        await asyncio.sleep(0.1)
        assert monitor.status()["checks_scheduled"] == 0
    finally:
        await monitor.stop()


async def test_maintenance_stops_the_check(fleet: Fleet) -> None:
    changes = await loaded_changes()
    monitor = HealthMonitor(changes, Config(store="memory://"), rng=NoStagger())
    await monitor.start()
    try:
        await changes.register(InstanceSpec("web", 1, "127.0.0.1", fleet.port, check=Check()))
        assert monitor.status()["checks_scheduled"] == 1
        await changes.set_status("web", 1, status=Status.MAINTENANCE)
        assert monitor.status()["checks_scheduled"] == 0
        await changes.set_status("web", 1, status=Status.ACTIVE)
        assert monitor.status()["checks_scheduled"] == 1
        await changes.deregister("web", 1)
        assert monitor.status()["checks_scheduled"] == 0
    finally:
        await monitor.stop()


async def _until(cond: object, timeout: float = 3.0) -> None:
    assert callable(cond)
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)
