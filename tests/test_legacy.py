"""The original JARVIS wire format, sent as raw requests in the old client's shapes."""

from __future__ import annotations

from conftest import ApiServer

from jarvis_dns.models import Status

OLD_REGISTER = {
    "server": "authentication-service",
    "instance_id": 1,
    "port": 5001,
    "host": "localhost",
    "metadata": {"version": "1.0", "capabilities": ["oauth", "jwt"], "max_connections": 1000},
}


async def test_register_then_discover(api: ApiServer) -> None:
    r = await api.client.post("/register", json=OLD_REGISTER)
    assert r.status_code == 200
    want = {"version": "1.0", "capabilities": ["oauth"], "busy": False}
    r = await api.client.post(
        "/discover", json={"service_type": "authentication-service", "requirements": want}
    )
    assert r.status_code == 200
    assert r.json() == {
        "service_type": "authentication-service",
        "instance_id": 1,
        "host": "localhost",
        "port": 5001,
        "metadata": OLD_REGISTER["metadata"],
        "status": "active",
        "busy": False,
    }


async def test_discover_is_strict(api: ApiServer) -> None:
    await api.client.post("/register", json=OLD_REGISTER)
    body = {"service_type": "authentication-service", "requirements": {"version": "9"}}
    r = await api.client.post("/discover", json=body)
    assert r.status_code == 404
    r = await api.client.post("/discover", json={"service_type": "nothing", "requirements": {}})
    assert r.status_code == 404


async def test_heartbeat_body_registers_unknown_and_sets_busy(api: ApiServer) -> None:
    beat = {
        "service_type": "user-service",
        "instance_id": 2,
        "host": "127.0.0.1",
        "port": 5002,
        "busy": True,
        "metrics": {"cpu_usage": 12.5},
    }
    r = await api.client.post("/heartbeat", json=beat)
    assert r.status_code == 200
    inst = api.view.get("user-service", 2)
    assert inst.busy and inst.metrics == {"cpu_usage": 12.5} and inst.port == 5002


async def test_heartbeat_path(api: ApiServer) -> None:
    await api.client.post("/register", json=OLD_REGISTER)
    r = await api.client.post("/heartbeat/authentication-service/1", json={"busy": True})
    assert r.status_code == 200 and api.view.get("authentication-service", 1).busy
    r = await api.client.post("/heartbeat/authentication-service/7")
    assert r.status_code == 404


async def test_status_dead_busy_and_back(api: ApiServer) -> None:
    await api.client.post("/register", json=OLD_REGISTER)
    svc = "authentication-service"
    r = await api.client.post("/status", json={"server": svc, "instance_id": 1, "status": "busy"})
    assert r.status_code == 200 and api.view.get(svc, 1).busy
    r = await api.client.post("/status", json={"server": svc, "instance_id": 1, "status": "dead"})
    assert r.status_code == 200 and api.view.get(svc, 1).status is Status.DEAD
    r = await api.client.post("/discover", json={"service_type": svc, "requirements": {}})
    assert r.status_code == 404
    body = {"server": svc, "instance_id": 1, "status": "active", "busy": False}
    r = await api.client.post("/status", json=body)
    assert r.json()["instance"]["status"] == "active"
    r = await api.client.post("/status", json={"server": svc, "instance_id": 5, "status": "dead"})
    assert r.status_code == 404


async def test_service_url(api: ApiServer) -> None:
    await api.client.post("/register", json=OLD_REGISTER)
    r = await api.client.get("/service/authentication-service")
    assert r.json() == {
        "url": "http://localhost:5001",
        "instance_id": 1,
        "metadata": OLD_REGISTER["metadata"],
    }
    await api.changes.set_status("authentication-service", 1, busy=True)
    r = await api.client.get("/service/authentication-service")
    assert r.status_code == 404
