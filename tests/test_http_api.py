"""HTTP API v1 over a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from aiohttp import web
from conftest import ApiServer, FakeClock, new_changes

from jarvis_dns.config import Config
from jarvis_dns.models import EventKind, Status
from jarvis_dns.registry import Observe

AUTH = {
    "service_type": "auth",
    "instance_id": 1,
    "host": "127.0.0.1",
    "port": 5001,
    "metadata": {"version": "1.0", "capabilities": ["oauth", "jwt"]},
}


async def register(api: ApiServer, **overrides: object) -> dict[str, object]:
    r = await api.client.post("/v1/instances", json={**AUTH, **overrides})
    assert r.status_code in (200, 201), r.text
    body: dict[str, object] = r.json()
    return body


async def test_register_is_201_then_200(api: ApiServer) -> None:
    r = await api.client.post("/v1/instances", json=AUTH)
    assert r.status_code == 201
    assert r.json()["status"] == "active" and r.headers["X-Jarvis-Index"] == "1"
    assert r.json()["check_failing"] is False
    r = await api.client.post("/v1/instances", json={**AUTH, "port": 5002})
    assert r.status_code == 200 and r.json()["port"] == 5002


async def test_host_defaults_to_peer_and_case_folds(api: ApiServer) -> None:
    body = {"service_type": "Auth-API", "instance_id": "Blue", "port": 80}
    r = await api.client.post("/v1/instances", json=body)
    assert r.status_code == 201
    got = r.json()
    assert (got["host"], got["service_type"], got["instance_id"]) == (
        "127.0.0.1",
        "auth-api",
        "blue",
    )


async def test_list_services_counts_by_status(api: ApiServer) -> None:
    await register(api)
    await register(api, instance_id=2, busy=True)
    await register(api, instance_id=3, status="maintenance")
    r = await api.client.get("/v1/services")
    counts = r.json()["services"]["auth"]
    assert counts == {"active": 2, "dead": 0, "maintenance": 1, "busy": 1, "total": 3}


async def test_service_filters(api: ApiServer) -> None:
    await register(api)
    await register(api, instance_id=2, busy=True)
    await register(api, instance_id=3, metadata={"version": "2.0"})
    ids = lambda r: [i["instance_id"] for i in r.json()["instances"]]  # noqa: E731
    assert ids(await api.client.get("/v1/services/auth")) == [1, 2, 3]
    assert ids(await api.client.get("/v1/services/auth?busy=false")) == [1, 3]
    req = json.dumps({"version": {"$in": ["2.0"]}})
    assert ids(await api.client.get("/v1/services/auth", params={"requirements": req})) == [3]
    await api.changes.set_status("auth", 1, Status.DEAD)
    assert ids(await api.client.get("/v1/services/auth?status=dead")) == [1]
    assert ids(await api.client.get("/v1/services/unknown")) == []


async def test_service_lists_in_the_one_discovery_order(api: ApiServer) -> None:
    """Numeric ids numerically, then string ids: not the order they registered in."""
    for iid in ("b", 10, 2, "a", 1):
        await register(api, instance_id=iid)
    r = await api.client.get("/v1/services/auth")
    assert [i["instance_id"] for i in r.json()["instances"]] == [1, 2, 10, "a", "b"]


async def test_get_and_delete_instance(api: ApiServer) -> None:
    await register(api)
    r = await api.client.get("/v1/services/auth/instances/1")
    assert r.status_code == 200 and r.json()["port"] == 5001
    r = await api.client.delete("/v1/services/auth/instances/1")
    assert r.status_code == 200
    r = await api.client.get("/v1/services/auth/instances/1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_heartbeat_and_status(api: ApiServer) -> None:
    await register(api)
    path = "/v1/services/auth/instances/1"
    r = await api.client.put(path + "/heartbeat", json={"busy": True, "metrics": {"load": 4}})
    assert r.status_code == 200 and r.json()["busy"] is True
    r = await api.client.put(path + "/heartbeat")
    assert r.status_code == 200
    r = await api.client.put("/v1/services/auth/instances/9/heartbeat", json={})
    assert r.status_code == 404
    r = await api.client.put(path + "/status", json={"status": "maintenance", "busy": False})
    assert r.json()["status"] == "maintenance" and r.json()["busy"] is False
    assert api.view.get("auth", 1).metrics == {"load": 4}


async def test_one_change_index_per_batch(api: ApiServer) -> None:
    """A beat that revives a dead instance and flips it busy is one batch: both events
    and the instance's modify_index carry the one index it was committed at."""
    await register(api)
    await api.changes.set_status("auth", 1, Status.DEAD)
    before = api.view.index
    r = await api.client.put("/v1/services/auth/instances/1/heartbeat", json={"busy": True})
    assert (r.json()["status"], r.json()["busy"]) == ("active", True)
    assert int(r.headers["X-Jarvis-Index"]) == before + 1 == api.view.index
    events = (await api.client.get(f"/v1/events?since={before}")).json()["events"]
    assert [(e["kind"], e["index"]) for e in events] == [
        ("heartbeat resumed", before + 1),
        ("busy", before + 1),
    ]
    got = (await api.client.get("/v1/services/auth/instances/1")).json()
    assert got["modify_index"] == before + 1


async def test_a_failing_check_shows_and_keeps_a_beat_from_reviving(api: ApiServer) -> None:
    await register(api)
    failed = Observe(
        "auth", 1, EventKind.CHECK_FAILED, Status.DEAD, "check failed", "refused", failing=True
    )
    await api.changes.run(failed)
    path = "/v1/services/auth/instances/1"
    assert (await api.client.get(path)).json()["check_failing"] is True
    r = await api.client.put(path + "/heartbeat")
    assert r.status_code == 200 and r.json()["status"] == "dead"
    got = (await api.client.get(path)).json()
    assert (got["status"], got["check_failing"]) == ("dead", True)


async def test_discover_with_requirements(api: ApiServer) -> None:
    await register(api, instance_id=1, busy=True)
    await register(api, instance_id=2, metadata={"capabilities": ["jwt"]})
    await register(api, instance_id=3)
    want = {"service_type": "auth", "requirements": {"capabilities": ["oauth"], "busy": False}}
    for _ in range(4):
        r = await api.client.post("/v1/discover", json=want)
        assert r.status_code == 200 and r.json()["instance_id"] == 3
    await api.changes.set_status("auth", 3, busy=True)
    r = await api.client.post("/v1/discover", json=want)
    assert r.status_code == 404 and r.json()["error"]["field"] == "service_type"


async def test_discover_strategies(api: ApiServer) -> None:
    for i in range(3):
        await register(api, instance_id=i)
    seen = set()
    for _ in range(3):
        r = await api.client.post("/v1/discover", json={"service_type": "auth"})
        seen.add(r.json()["instance_id"])
    assert seen == {0, 1, 2}
    for strategy in ("random", "weighted", "least_loaded"):
        r = await api.client.post(
            "/v1/discover", json={"service_type": "auth", "strategy": strategy}
        )
        assert r.status_code == 200
    body = {"service_type": "auth", "strategy": "consistent_hash", "key": "user-7"}
    picks = {
        (await api.client.post("/v1/discover", json=body)).json()["instance_id"] for _ in range(5)
    }
    assert len(picks) == 1


async def test_blocking_query_wakes_within_50ms(api: ApiServer) -> None:
    r = await api.client.get("/v1/services/auth")
    index = int(r.headers["X-Jarvis-Index"])

    async def later() -> float:
        await asyncio.sleep(0.2)
        await register(api)
        return time.perf_counter()

    task = asyncio.create_task(later())
    r = await api.client.get(f"/v1/services/auth?index={index}&wait=10s")
    woke = time.perf_counter()
    registered = await task
    assert r.status_code == 200 and r.json()["instances"][0]["instance_id"] == 1
    assert int(r.headers["X-Jarvis-Index"]) > index
    assert woke - registered < 0.05


async def test_blocking_query_times_out_with_same_index(api: ApiServer) -> None:
    await register(api)
    start = time.perf_counter()
    r = await api.client.get("/v1/services/auth?index=1&wait=200ms")
    assert 0.15 < time.perf_counter() - start < 2
    assert r.headers["X-Jarvis-Index"] == "1"


async def test_blocking_query_ignores_other_services(api: ApiServer) -> None:
    await register(api)
    task = asyncio.create_task(api.client.get("/v1/services/auth?index=1&wait=300ms"))
    await asyncio.sleep(0.05)
    await register(api, service_type="billing")
    r = await task
    assert r.headers["X-Jarvis-Index"] == "1"


async def test_blocking_query_answers_at_once_when_index_went_back(api: ApiServer) -> None:
    start = time.perf_counter()
    r = await api.client.get("/v1/services?index=999&wait=10s")
    assert time.perf_counter() - start < 1 and r.status_code == 200


async def test_events_log_and_blocking(api: ApiServer) -> None:
    await register(api)
    await api.client.put("/v1/services/auth/instances/1/status", json={"busy": True})
    r = await api.client.get("/v1/events?since=0")
    kinds = [e["kind"] for e in r.json()["events"]]
    assert kinds == ["registered", "busy"]
    assert r.json()["events"][1]["reason"] == "status update"
    task = asyncio.create_task(api.client.get("/v1/events?since=2&index=2&wait=5s"))
    await asyncio.sleep(0.05)
    await api.client.delete("/v1/services/auth/instances/1")
    events = (await task).json()["events"]
    assert [e["kind"] for e in events] == ["deregistered"]


async def test_health(api: ApiServer) -> None:
    await register(api)
    body = (await api.client.get("/v1/health")).json()
    assert body["status"] == "ok" and body["instances"] == 1 and body["index"] == 1


async def test_health_says_degraded_while_the_store_is_out_of_reach(clock: FakeClock) -> None:
    from jarvis_dns.discovery import Discovery
    from jarvis_dns.http.blocking import IndexWaiter
    from jarvis_dns.http.common import Context, Hooks
    from jarvis_dns.http.routes import make_web_app

    changes = new_changes(clock)
    state = {"backend": "etcd", "state": "ok", "view_age_s": 0.0}
    hooks = Hooks(store_status=lambda: dict(state), cluster_status=lambda: {"node": "n1"})
    ctx = Context(changes, Discovery(changes.view), Config(), IndexWaiter(changes), hooks)
    runner = web.AppRunner(make_web_app(ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/health"
    try:
        async with httpx.AsyncClient() as client:
            body = (await client.get(url)).json()
            assert body["status"] == "ok" and body["store"]["backend"] == "etcd"
            assert body["cluster"] == {"node": "n1"}
            state.update(state="unavailable", view_age_s=4.2)
            body = (await client.get(url)).json()
            assert body["status"] == "degraded" and body["store"]["view_age_s"] == 4.2
    finally:
        await runner.cleanup()
