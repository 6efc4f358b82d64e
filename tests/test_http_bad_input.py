"""Bad requests get a 4xx naming the field, and change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ApiServer

GOOD = {"service_type": "auth", "instance_id": 1, "host": "127.0.0.1", "port": 5001}
INST = "/v1/services/auth/instances/1"
JSON = {"content-type": "application/json"}


def reg(**changes: Any) -> dict[str, Any]:
    body = {**GOOD, **changes}
    return {k: v for k, v in body.items() if v is not ...}


# (method, path, kwargs for httpx, status, field)
CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", "/v1/instances", {"content": b"{not json"}, 400, "body"),
    ("POST", "/v1/instances", {"content": b""}, 400, "body"),
    ("POST", "/v1/instances", {"json": [1, 2]}, 400, "body"),
    ("POST", "/v1/instances", {"json": "text"}, 400, "body"),
    (
        "POST",
        "/v1/instances",
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
        400,
        "body",
    ),
    ("POST", "/v1/instances", {"data": {"a": "b"}}, 415, "Content-Type"),
    (
        "POST",
        "/v1/instances",
        {"content": b"x" * 70_000, "headers": {"content-type": "application/json"}},
        413,
        "body",
    ),
    ("POST", "/v1/instances", {"json": reg(service_type=...)}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(service_type="")}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(service_type="bad_name")}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(service_type="-lead")}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(service_type="a" * 64)}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(service_type=7)}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(instance_id=...)}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(instance_id=-1)}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(instance_id=True)}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(instance_id="a.b")}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(instance_id=1.5)}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(port=...)}, 400, "port"),
    ("POST", "/v1/instances", {"json": reg(port=0)}, 400, "port"),
    ("POST", "/v1/instances", {"json": reg(port=65536)}, 400, "port"),
    ("POST", "/v1/instances", {"json": reg(port="80")}, 400, "port"),
    ("POST", "/v1/instances", {"json": reg(host="bad host!")}, 400, "host"),
    ("POST", "/v1/instances", {"json": reg(host=12)}, 400, "host"),
    ("POST", "/v1/instances", {"json": reg(metadata=[1])}, 400, "metadata"),
    ("POST", "/v1/instances", {"json": reg(metadata={"a": "x" * 17_000})}, 400, "metadata"),
    (
        "POST",
        "/v1/instances",
        {"json": reg(metadata={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}})},
        400,
        "metadata",
    ),
    ("POST", "/v1/instances", {"json": reg(weight=0)}, 400, "weight"),
    ("POST", "/v1/instances", {"json": reg(metadata={"weight": "heavy"})}, 400, "metadata.weight"),
    ("POST", "/v1/instances", {"json": reg(busy="yes")}, 400, "busy"),
    ("POST", "/v1/instances", {"json": reg(status="sleeping")}, 400, "status"),
    ("POST", "/v1/instances", {"json": reg(ttl_s=0)}, 400, "ttl_s"),
    ("POST", "/v1/instances", {"json": reg(ttl_s="30")}, 400, "ttl_s"),
    ("POST", "/v1/instances", {"json": reg(check={"type": "icmp"})}, 400, "check.type"),
    ("POST", "/v1/instances", {"json": reg(check={"interval_s": 0.1})}, 400, "check.interval_s"),
    ("POST", "/v1/instances", {"json": reg(check={"path": "health"})}, 400, "check.path"),
    ("POST", "/v1/instances", {"json": reg(check={"bogus": 1})}, 400, "check.bogus"),
    ("POST", "/v1/instances", {"json": reg(metdata={})}, 400, "metdata"),
    ("POST", "/v1/instances", {"json": reg(deregister_after_s=-5)}, 400, "deregister_after_s"),
    ("POST", "/v1/instances", {"json": reg(service_type="a" * 63)}, 400, "service_type"),
    ("POST", "/v1/instances", {"json": reg(instance_id=10**63)}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(instance_id="1" * 64)}, 400, "instance_id"),
    ("POST", "/v1/instances", {"json": reg(host="fe80::1%eth0")}, 400, "host"),
    ("POST", "/v1/instances", {"json": reg(host="0.0.0.0")}, 400, "host"),
    ("POST", "/v1/instances", {"json": reg(host="999.1.1.1")}, 400, "host"),
    ("POST", "/v1/instances", {"json": reg(metadata=[])}, 400, "metadata"),
    ("POST", "/v1/instances", {"json": reg(ttl_s=10**400)}, 400, "ttl_s"),
    ("POST", "/v1/instances", {"content": b"[" * 100_000, "headers": JSON}, 413, "body"),
    (
        "POST",
        "/v1/instances",
        {"content": b"[" * 50_000 + b"]" * 50_000, "headers": JSON},
        413,
        "body",
    ),
    (
        "POST",
        "/v1/instances",
        {"content": b"[" * 30_000 + b"]" * 30_000, "headers": JSON},
        400,
        "body",
    ),
    (
        "PUT",
        INST + "/heartbeat",
        {"content": b'{"metrics": {"x": NaN}}', "headers": JSON},
        400,
        "metrics",
    ),
    ("GET", "/v1/services/auth?requirements=" + "[" * 3000 + "]" * 3000, {}, 400, "requirements"),
    ("PUT", INST + "/heartbeat", {"json": {"busy": 1}}, 400, "busy"),
    ("PUT", INST + "/heartbeat", {"json": {"metrics": "hot"}}, 400, "metrics"),
    ("PUT", INST + "/heartbeat", {"json": {"bsy": True}}, 400, "bsy"),
    ("PUT", "/v1/services/auth/instances/2/heartbeat", {"json": {}}, 404, "instance_id"),
    ("PUT", "/v1/services/Bad_Svc/instances/1/heartbeat", {"json": {}}, 400, "service_type"),
    ("PUT", INST + "/status", {"json": {}}, 400, "status"),
    ("PUT", INST + "/status", {"json": {"status": "gone"}}, 400, "status"),
    ("DELETE", "/v1/services/auth/instances/2", {}, 404, "instance_id"),
    ("GET", "/v1/services/auth/instances/x_y", {}, 400, "instance_id"),
    ("POST", "/v1/discover", {"json": {}}, 400, "service_type"),
    (
        "POST",
        "/v1/discover",
        {"json": {"service_type": "auth", "strategy": "best"}},
        400,
        "strategy",
    ),
    (
        "POST",
        "/v1/discover",
        {"json": {"service_type": "auth", "strategy": "consistent_hash"}},
        400,
        "key",
    ),
    (
        "POST",
        "/v1/discover",
        {"json": {"service_type": "auth", "requirements": [1]}},
        400,
        "requirements",
    ),
    (
        "POST",
        "/v1/discover",
        {"json": {"service_type": "auth", "requirements": {"v": {"$near": 1}}}},
        400,
        "requirements.v",
    ),
    ("GET", "/v1/services/auth?index=abc", {}, 400, "index"),
    ("GET", "/v1/services/auth?index=1&wait=forever", {}, 400, "wait"),
    ("GET", "/v1/services/auth?requirements={", {}, 400, "requirements"),
    ("GET", "/v1/services/auth?busy=maybe", {}, 400, "busy"),
    ("GET", "/v1/events?since=-1", {}, 400, "since"),
    ("POST", "/register", {"json": {"instance_id": 1, "port": 1}}, 400, "server"),
    (
        "POST",
        "/register",
        {"json": {"server": "auth", "instance_id": 1, "port": 99999}},
        400,
        "port",
    ),
    (
        "POST",
        "/status",
        {"json": {"server": "auth", "instance_id": 1, "status": "odd"}},
        400,
        "status",
    ),
    (
        "POST",
        "/discover",
        {"json": {"service_type": "auth", "requirements": {"x": {"$bad": 1}}}},
        400,
        "requirements.x",
    ),
    ("POST", "/heartbeat/auth/1", {"json": {"busy": "no"}}, 400, "busy"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), CASES)
async def test_bad_request(
    api: ApiServer, method: str, path: str, kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    await api.client.post("/v1/instances", json=GOOD)
    before = (api.view.index, api.view.get("auth", 1).to_dict(), api.view.count())
    r = await api.client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field and error["message"] and error["code"]
    after = (api.view.index, api.view.get("auth", 1).to_dict(), api.view.count())
    assert after == before


async def test_unknown_route_is_json_404(api: ApiServer) -> None:
    r = await api.client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.client.patch("/v1/instances")
    assert r.status_code == 405 and "error" in r.json()


def test_there_are_at_least_30_kinds() -> None:
    assert len(CASES) >= 30
