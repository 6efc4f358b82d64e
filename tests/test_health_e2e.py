"""End to end on loopback: the full App, a real instance process serving /health,
and DNS answers read with dnspython (and dig when installed).

- heartbeats stop (ttl_s=3): gone from SRV within 4 s;
- /health answers 500 (interval_s=1): dead after exactly 3 failed probes;
- /health answers {"busy": true}: the SRV record moves to priority 10.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rdatatype
import pytest

from jarvis_dns.app import App
from jarvis_dns.config import Config
from jarvis_dns.models import EventKind, Status

pytestmark = pytest.mark.slow

SVC = "e2e"
ZONE = "jarvis.internal"
QNAME = f"_{SVC}._tcp.{ZONE}."
DIG = shutil.which("dig")

# The instance: serves /health (mode set through /control), registers itself and
# heartbeats every second (ttl_s / 3, like the Python client) while beats are on.
INSTANCE = r"""
import asyncio, json, sys
from aiohttp import ClientSession, web

registry, body = sys.argv[1], json.loads(sys.argv[2])
state = {"mode": "ok", "beats": True, "served_500": 0, "heartbeats": 0}

async def health(request):
    if state["mode"] == "500":
        state["served_500"] += 1
        return web.Response(status=500, text="database unreachable")
    if state["mode"] == "busy":
        return web.json_response({"busy": True, "metrics": {"queue": 42}})
    return web.json_response({"status": "ok"})

async def control(request):
    if "mode" in request.query:
        state["mode"] = request.query["mode"]
    if "beats" in request.query:
        state["beats"] = request.query["beats"] == "1"
    return web.json_response(state)

async def main():
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/control", control)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    svc, iid = body["service_type"], body["instance_id"]
    beat = f"{registry}/v1/services/{svc}/instances/{iid}/heartbeat"
    async with ClientSession() as session:
        async with session.post(f"{registry}/v1/instances", json={**body, "port": port}) as r:
            r.raise_for_status()
        print(port, flush=True)
        while True:
            await asyncio.sleep(1.0)
            if state["beats"]:
                async with session.put(beat, json={}) as r:
                    state["heartbeats"] += r.status == 200

asyncio.run(main())
"""


class Instance:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port

    async def control(self, **query: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/control"
        async with aiohttp.ClientSession() as s, s.get(url, params=query) as resp:
            state: dict[str, Any] = await resp.json()
            return state


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    config = Config(
        http="127.0.0.1:0",
        dns=["127.0.0.1:0"],
        store="memory://",
        data_dir=str(tmp_path),
        zones_dir=str(tmp_path / "zones"),
        domain=ZONE,
    )
    app = App(config)
    await app.start()
    yield app
    await app.stop()
    await app.close()


@pytest.fixture
async def spawn(app: App) -> AsyncIterator[Callable[..., Any]]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(instance_id: int, **fields: Any) -> Instance:
        body = {"service_type": SVC, "instance_id": instance_id, "host": "127.0.0.1", **fields}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", INSTANCE, app.http_url, json.dumps(body),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        return Instance(proc, int(line))

    yield start
    for proc in procs:
        proc.kill()
        await proc.wait()


async def srv(app: App) -> list[tuple[int, int]]:
    """(priority, port) of every SRV answer for the service, through real UDP."""
    host, port = app.dns_addresses[0]
    query = dns.message.make_query(QNAME, dns.rdatatype.SRV)
    reply = await dns.asyncquery.udp(query, host, port=port, timeout=2)
    return sorted((rr.priority, rr.port) for rrset in reply.answer for rr in rrset)


async def dig_srv(app: App) -> str:
    assert DIG is not None
    host, port = app.dns_addresses[0]
    proc = await asyncio.create_subprocess_exec(
        DIG, f"@{host}", "-p", str(port), QNAME, "SRV", "+short", "+tries=1", "+time=2",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode().strip()


async def until(cond: Callable[[], Any], timeout: float, step: float = 0.05) -> float:
    """Wait for an (async) condition; returns the seconds it took."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await cond():
            await asyncio.sleep(step)
    return time.monotonic() - start


async def test_stopped_heartbeats_leave_srv_within_4s(app: App, spawn: Any) -> None:
    inst = await spawn(1, ttl_s=3)
    assert await srv(app) == [(0, inst.port)]
    if DIG:
        assert await dig_srv(app) == f"0 100 {inst.port} 1.{SVC}.{ZONE}."
    await asyncio.sleep(3.5)  # heartbeats keep it alive past its TTL
    assert await srv(app) == [(0, inst.port)]

    await inst.control(beats="0")

    async def gone() -> bool:
        return await srv(app) == []

    assert await until(gone, timeout=6) < 4.0
    assert app.view.get(SVC, 1).status is Status.DEAD
    if DIG:
        assert await dig_srv(app) == ""
    events = [e for e in app.changes.events.since(0) if e.kind is EventKind.TTL_EXPIRED]
    assert [e.reason for e in events] == ["ttl expired"]


async def test_health_500_is_dead_after_3_failures(app: App, spawn: Any) -> None:
    check = {"type": "http", "path": "/health", "interval_s": 1, "timeout_s": 1}
    inst = await spawn(2, ttl_s=30, check=check)
    assert await srv(app) == [(0, inst.port)]
    await inst.control(mode="500")

    async def dead() -> bool:
        return app.view.get(SVC, 2).status is Status.DEAD

    await until(dead, timeout=6, step=0.02)
    state = await inst.control()
    assert state["served_500"] == 3  # not one fewer, and dead before the fourth
    assert await srv(app) == []
    if DIG:
        assert await dig_srv(app) == ""
    event = app.changes.events.since(0)[-1]
    assert event.kind is EventKind.CHECK_FAILED
    assert event.reason == "HTTP 500: database unreachable"
    # Its heartbeats go on, but a failing check keeps it out of answers.
    beats = state["heartbeats"]
    await until(lambda: _beats_past(inst, beats + 1), timeout=4)
    assert await srv(app) == []
    # The check recovers: back in answers.
    await inst.control(mode="ok")

    async def back() -> bool:
        return await srv(app) == [(0, inst.port)]

    await until(back, timeout=4)


async def _beats_past(inst: Instance, count: int) -> bool:
    return int((await inst.control())["heartbeats"]) >= count


async def test_busy_health_moves_srv_to_priority_10(app: App, spawn: Any) -> None:
    check = {"type": "http", "path": "/health", "interval_s": 1, "timeout_s": 1}
    inst = await spawn(3, ttl_s=30, check=check)
    assert await srv(app) == [(0, inst.port)]
    await inst.control(mode="busy")

    async def busy() -> bool:
        return await srv(app) == [(10, inst.port)]

    await until(busy, timeout=4)
    assert app.view.get(SVC, 3).metrics == {"queue": 42}
    if DIG:
        assert (await dig_srv(app)).startswith("10 ")
    await inst.control(mode="ok")

    async def idle() -> bool:
        return await srv(app) == [(0, inst.port)]

    await until(idle, timeout=4)
