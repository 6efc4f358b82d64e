"""ACL tokens against a real server on loopback: 401/403, per-service write and read,
filtered listings, hidden check output, management routes, tokens kept across a restart
(hashed), the bootstrap token file, and the pure policy rules."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
from conftest import app_config, running_app

from jarvis_dns import acl
from jarvis_dns.config import Config

BOOT = "boot-secret"


def config(tmp_path: Path, **kw: object) -> Config:
    settings: dict[str, object] = {"store": "", "acl": True, "acl_bootstrap_token": BOOT}
    return app_config(tmp_path, **{**settings, **kw})


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def body(svc: str, iid: int, **extra: object) -> dict[str, object]:
    return {"service_type": svc, "instance_id": iid, "host": "10.0.0.1", "port": 80, **extra}


async def make_token(c: httpx.AsyncClient, services: dict[str, str]) -> str:
    r = await c.post(
        "/v1/acl/tokens",
        json={"description": "t", "policy": {"services": services}},
        headers=bearer(BOOT),
    )
    assert r.status_code == 201, r.text
    assert set(r.json()) >= {"accessor", "token"}
    return str(r.json()["token"])


async def test_without_a_token_writes_are_401_and_a_foreign_service_is_403(
    tmp_path: Path,
) -> None:
    async with running_app(config(tmp_path)) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        r = await c.post("/v1/instances", json=body("auth", 1))
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        r = await c.post("/v1/instances", json=body("auth", 1), headers=bearer("nope"))
        assert r.status_code == 401
        auth = await make_token(c, {"auth": "write", "*": "read"})
        r = await c.post("/v1/instances", json=body("auth", 1), headers=bearer(auth))
        assert r.status_code == 201
        r = await c.post("/v1/instances", json=body("payments", 1), headers=bearer(auth))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
        # X-Jarvis-Token works as well as Authorization
        beat = "/v1/services/auth/instances/1/heartbeat"
        assert (await c.put(beat, headers={"X-Jarvis-Token": auth})).status_code == 200
        assert (await c.put(beat)).status_code == 401
        for method, path in [
            ("PUT", "/v1/services/payments/instances/1/status"),
            ("DELETE", "/v1/services/payments/instances/1"),
            ("PUT", "/v1/services/payments/instances/1/heartbeat"),
        ]:
            r = await c.request(method, path, json={"busy": True}, headers=bearer(auth))
            assert r.status_code == 403, (method, path)
        r = await c.put(
            "/v1/services/auth/instances/1/status", json={"busy": True}, headers=bearer(auth)
        )
        assert r.status_code == 200
        # malformed Authorization is a 401, not a crash
        r = await c.get("/v1/services/auth", headers={"Authorization": "Basic eA=="})
        assert r.status_code == 401


async def test_reads_are_filtered_to_readable_services(tmp_path: Path) -> None:
    async with running_app(config(tmp_path)) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        for svc in ("auth", "payments"):
            r = await c.post("/v1/instances", json=body(svc, 1), headers=bearer(BOOT))
            assert r.status_code == 201
        reader = await make_token(c, {"auth": "read"})
        r = await c.get("/v1/services", headers=bearer(reader))
        assert list(r.json()["services"]) == ["auth"]
        events = (await c.get("/v1/events", headers=bearer(reader))).json()["events"]
        assert {e["service_type"] for e in events} == {"auth"}
        assert (await c.get("/v1/services/auth", headers=bearer(reader))).status_code == 200
        assert (await c.get("/v1/services/payments", headers=bearer(reader))).status_code == 403
        r = await c.post("/v1/discover", json={"service_type": "payments"}, headers=bearer(reader))
        assert r.status_code == 403
        assert (await c.get("/v1/services")).status_code == 401  # anonymous: none
        assert (await c.get("/service/auth")).status_code == 401  # legacy acts anonymous
        assert (await c.get("/v1/health")).status_code == 200  # liveness probes stay open


async def test_anonymous_read(tmp_path: Path) -> None:
    async with (
        running_app(config(tmp_path, acl_anonymous="read")) as app,
        httpx.AsyncClient(base_url=app.http_url) as c,
    ):
        await c.post("/v1/instances", json=body("auth", 1), headers=bearer(BOOT))
        assert (await c.get("/v1/services/auth")).status_code == 200
        assert (await c.get("/service/auth")).status_code == 200  # the old client reads
        r = await c.post("/register", json={"server": "auth", "instance_id": 2, "port": 80})
        assert r.status_code == 401  # and nothing more
        r = await c.post("/heartbeat/auth/1", json={})
        assert r.status_code == 401


async def test_check_output_is_shown_only_to_writers(tmp_path: Path) -> None:
    cfg = config(tmp_path, active_checks=False)
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        check = {"type": "tcp", "interval_s": 60}
        r = await c.post("/v1/instances", json=body("auth", 1, check=check), headers=bearer(BOOT))
        assert r.status_code == 201
        await app.changes.heartbeat("auth", 1, metrics={"secret": 1})
        writer = await make_token(c, {"auth": "write"})
        reader = await make_token(c, {"auth": "read"})
        seen = (await c.get("/v1/services/auth/instances/1", headers=bearer(writer))).json()
        assert seen["metrics"] == {"secret": 1}
        for path in ("/v1/services/auth/instances/1", "/v1/services/auth"):
            r = await c.get(path, headers=bearer(reader))
            text = r.text
            assert r.status_code == 200 and "secret" not in text, text
        r = await c.post("/v1/discover", json={"service_type": "auth"}, headers=bearer(reader))
        assert r.json()["metrics"] == {} and r.json()["check_output"] == ""


async def test_management_routes_need_management(tmp_path: Path) -> None:
    async with running_app(config(tmp_path)) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        writer = await make_token(c, {"*": "write"})
        for method, path in [
            ("POST", "/v1/zones/reload"),
            ("DELETE", "/v1/health/self-preservation"),
            ("GET", "/v1/acl/tokens"),
        ]:
            assert (await c.request(method, path)).status_code == 401
            r = await c.request(method, path, headers=bearer(writer))
            assert r.status_code == 403, (method, path)
            r = await c.request(method, path, headers=bearer(BOOT))
            assert r.status_code == 200, (method, path, r.text)
        r = await c.post(
            "/v1/acl/tokens", json={"policy": {"services": {"x": "own"}}}, headers=bearer(BOOT)
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "policy.services.x"


async def test_tokens_persist_hashed_and_can_be_deleted(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        secret = await make_token(c, {"auth": "write"})
        listed = (await c.get("/v1/acl/tokens", headers=bearer(BOOT))).json()["tokens"]
        assert len(listed) == 1 and "token" not in listed[0] and "secret_hash" not in listed[0]
        accessor = listed[0]["accessor"]
    db = sqlite3.connect(tmp_path / "registry.db")
    stored = db.execute("SELECT data FROM acl_tokens").fetchall()
    db.close()
    assert len(stored) == 1 and secret not in stored[0][0]
    assert json.loads(stored[0][0])["secret_hash"] == acl.hash_secret(secret)
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        r = await c.post("/v1/instances", json=body("auth", 1), headers=bearer(secret))
        assert r.status_code == 201  # still valid after a restart
        r = await c.delete(f"/v1/acl/tokens/{accessor}", headers=bearer(BOOT))
        assert r.status_code == 200
        r = await c.post("/v1/instances", json=body("auth", 2), headers=bearer(secret))
        assert r.status_code == 401
        r = await c.delete(f"/v1/acl/tokens/{accessor}", headers=bearer(BOOT))
        assert r.status_code == 404


async def test_bootstrap_token_is_made_once_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, acl_bootstrap_token="")
    async with running_app(cfg):
        pass
    path = tmp_path / "acl-bootstrap-token"
    secret = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sum(secret in r.getMessage() for r in caplog.records) == 1
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        assert (await c.get("/v1/acl/tokens", headers=bearer(secret))).status_code == 200
    assert sum(secret in r.getMessage() for r in caplog.records) == 1  # logged once


async def test_token_routes_say_when_acls_are_off(tmp_path: Path) -> None:
    async with (
        running_app(config(tmp_path, acl=False)) as app,
        httpx.AsyncClient(base_url=app.http_url) as c,
    ):
        r = await c.get("/v1/acl/tokens")
        assert r.status_code == 409 and r.json()["error"]["code"] == "acl_disabled"
        assert (await c.post("/v1/instances", json=body("auth", 1))).status_code == 201


@pytest.mark.parametrize(
    ("rules", "svc", "level"),
    [
        ({"auth": acl.WRITE, "*": acl.READ}, "auth", acl.WRITE),
        ({"auth": acl.WRITE, "*": acl.READ}, "payments", acl.READ),
        ({"auth-*": acl.WRITE, "*": acl.READ}, "auth-eu", acl.WRITE),
        ({"a*": acl.READ, "auth*": acl.WRITE}, "auth2", acl.WRITE),
        ({"auth": acl.READ}, "payments", acl.NONE),
    ],
)
def test_policy_most_specific_rule_wins(rules: dict[str, int], svc: str, level: int) -> None:
    assert acl.Policy(rules).level(svc) == level


def test_rule_parsing() -> None:
    assert acl.parse_rule("*:read") == ("*", "read")
    with pytest.raises(ValueError, match="SERVICE:read"):
        acl.parse_rule("auth")


async def test_cli_token_create_list_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from jarvis_dns.cli import main

    async with running_app(config(tmp_path)) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        common = ["--url", app.http_url, "--token", BOOT]
        argv = ["token", "create", *common, "--service", "auth:write", "--service", "*:read"]
        assert await asyncio.to_thread(main, argv) == 0
        made = json.loads(capsys.readouterr().out)
        assert made["policy"]["services"] == {"auth": "write", "*": "read"}
        r = await c.post("/v1/instances", json=body("auth", 1), headers=bearer(made["token"]))
        assert r.status_code == 201
        assert await asyncio.to_thread(main, ["token", "list", *common]) == 0
        assert made["accessor"] in capsys.readouterr().out
        argv = ["token", "delete", *common, made["accessor"]]
        assert await asyncio.to_thread(main, argv) == 0
        capsys.readouterr()
        bad = ["token", "create", *common, "--service", "auth"]
        assert await asyncio.to_thread(main, bad) == 1
        assert "SERVICE:read" in capsys.readouterr().err
        no_token = ["token", "list", "--url", app.http_url]
        assert await asyncio.to_thread(main, no_token) == 1
        assert "401" in capsys.readouterr().err
