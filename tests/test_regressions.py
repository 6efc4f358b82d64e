"""Bugs a review found, each pinned by the smallest test that shows it."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import aiohttp
from aiohttp import web
from conftest import FakeClock, new_changes

from jarvis_dns.health.checks import _read_capped
from jarvis_dns.health.outcome import interpret_http
from jarvis_dns.http.blocking import IndexWaiter
from jarvis_dns.matching import Selector, load_of
from jarvis_dns.models import InstanceSpec
from jarvis_dns.store.sqlite import SqliteStore


async def test_a_late_liveness_flush_never_overwrites_a_newer_full_write(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = SqliteStore(tmp_path / "r.db")
    changes = new_changes(clock, store)
    await changes.load()
    await changes.register(InstanceSpec("svc", 0, "127.0.0.1", 80))
    await changes.heartbeat("svc", 0, metrics={"v": "old"})
    taken = changes.liveness.drain()  # the flusher took these before the change below
    await changes.heartbeat("svc", 0, busy=True, metrics={"v": "new"})  # a full write
    await store.write_liveness(taken)  # ...and its thread writes them only now
    await store.close()
    again = SqliteStore(tmp_path / "r.db")
    (inst,) = (await again.load()).instances
    await again.close()
    assert inst.metrics == {"v": "new"} and inst.busy


async def test_timed_out_blocking_queries_leave_nothing_behind(clock: FakeClock) -> None:
    waiter = IndexWaiter(new_changes(clock))
    await asyncio.gather(*(waiter.wait(f"svc-{i}", lambda: 0, 0, 0.01) for i in range(50)))
    assert waiter.pending() == 0


def test_huge_or_nan_load_is_the_worst_not_an_error() -> None:
    fleet = [
        {"service_type": "s", "instance_id": 1, "metrics": {"load": 10**400}},
        {"service_type": "s", "instance_id": 2, "metrics": {"load": math.nan}},
        {"service_type": "s", "instance_id": 3, "metrics": {"load": 5}},
    ]
    assert load_of(fleet[0]) == math.inf and load_of(fleet[1]) == math.inf
    assert Selector().select("least_loaded", fleet)["instance_id"] == 3  # type: ignore[index]


def test_check_answers_with_nan_metrics_or_absurd_nesting_stay_safe() -> None:
    nan = interpret_http(200, b'{"busy": true, "metrics": {"x": NaN}}')
    assert nan.passed and nan.busy is True and nan.metrics is None
    deep = interpret_http(200, b"[" * 100_000 + b"]" * 100_000)
    assert deep.passed and deep.busy is None


async def test_a_health_body_in_several_segments_is_read_whole() -> None:
    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"busy": true, "pad": "' + b"x" * 100 + b'"')
        await asyncio.sleep(0.05)
        await response.write(b', "status": "fail"}')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/health", slow_body)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/health") as resp,
        ):
            result = interpret_http(resp.status, await _read_capped(resp))
    finally:
        await runner.cleanup()
    assert not result.passed  # "status": "fail" arrived in the second segment


async def test_blocking_queries_get_503_at_shutdown_not_a_long_wait(clock: FakeClock) -> None:
    import time

    import httpx

    from jarvis_dns.config import Config
    from jarvis_dns.discovery import Discovery
    from jarvis_dns.http.common import Context, Hooks
    from jarvis_dns.http.routes import make_web_app

    changes = new_changes(clock)
    await changes.load()
    waiter = IndexWaiter(changes)
    ctx = Context(changes, Discovery(changes.view), Config(), waiter, Hooks())
    runner = web.AppRunner(make_web_app(ctx))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/services/auth?index=0&wait=30s"
    try:
        async with httpx.AsyncClient() as client:
            pending = asyncio.create_task(client.get(url))
            await asyncio.sleep(0.1)
            start = time.perf_counter()
            waiter.close()
            response = await pending
    finally:
        await runner.cleanup()
    assert response.status_code == 503 and time.perf_counter() - start < 1
    assert response.json()["error"]["code"] == "shutting_down"
