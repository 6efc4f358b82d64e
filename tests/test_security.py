"""Security outside ACLs, against real servers on loopback: protected mode, denied check
targets, TCP check output, HTTP connection limits and deadlines, quotas, TLS."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import httpx
import pytest
from conftest import app_config, free_ports, running_app, serve_refused

from jarvis_dns.app import App
from jarvis_dns.config import Config
from jarvis_dns.errors import ConfigError
from jarvis_dns.health import CheckResult, Target, TcpCheck
from jarvis_dns.health.checks import DenyingResolver, HttpCheck
from jarvis_dns.health.limiter import Limiter
from jarvis_dns.models import Check


def config(tmp_path: Path, **kw: object) -> Config:
    return app_config(tmp_path, **kw)


# -- protected mode ---------------------------------------------------------------


async def test_a_bind_beyond_loopback_needs_acl_or_insecure(tmp_path: Path) -> None:
    app = App(config(tmp_path, http="0.0.0.0:0"))
    with pytest.raises(ConfigError, match=r"--acl.*--insecure"):
        await app.start()
    await app.close()
    async with running_app(config(tmp_path, http="0.0.0.0:0", insecure=True)) as app:
        assert app.http_port
    cfg = config(tmp_path, http="0.0.0.0:0", acl=True, acl_bootstrap_token="x")
    async with running_app(cfg) as app:
        assert app.http_port


def test_serve_refuses_an_open_bind_with_one_line(tmp_path: Path) -> None:
    lines = serve_refused(tmp_path, "--http", f"0.0.0.0:{free_ports(1)[0]}")
    assert len(lines) == 1 and "--acl" in lines[0] and "--insecure" in lines[0], lines


# -- safe checks ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254"])
async def test_a_check_aimed_at_a_denied_range_is_400(tmp_path: Path, host: str) -> None:
    async with running_app(config(tmp_path)) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        body = {"service_type": "x", "instance_id": 1, "host": host, "port": 80}
        r = await c.post("/v1/instances", json={**body, "check": {"type": "http"}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "check", r.text
        assert "--check-deny" in r.json()["error"]["message"]
        r = await c.post("/v1/instances", json=body)  # no check: nothing is fetched
        assert r.status_code == 201


async def test_check_deny_is_configurable(tmp_path: Path) -> None:
    cfg = config(tmp_path, check_deny=["10.0.0.0/8"])
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        body = {"service_type": "x", "instance_id": 1, "port": 80, "check": {"type": "tcp"}}
        r = await c.post("/v1/instances", json={**body, "host": "10.1.2.3"})
        assert r.status_code == 400
        r = await c.post("/v1/instances", json={**body, "host": "169.254.169.254"})
        assert r.status_code == 201


async def test_checks_by_name_never_reach_a_denied_address() -> None:
    """A name is asked again at probe time: it may resolve to a denied range. A real
    listener on loopback counts the connections the checks made: none."""
    connections: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    deny = ("127.0.0.0/8", "::1/128")

    def target(kind: str) -> Target:
        return Target("svc", "1", "localhost", port, Check(type=kind), deny)  # type: ignore[arg-type]

    tcp = TcpCheck(target("tcp"), Recorder(), Limiter(4), random.Random(0))
    assert (await tcp.run_once()).output == "TCP connect failed"
    connector = aiohttp.TCPConnector(resolver=DenyingResolver(deny))
    async with aiohttp.ClientSession(connector=connector) as session:
        http = HttpCheck(target("http"), Recorder(), Limiter(4), random.Random(0), session)
        assert not (await http.run_once()).passed
    allowed = TcpCheck(
        Target("svc", "1", "localhost", port, Check(type="tcp")), Recorder(), Limiter(4),
        random.Random(0),
    )  # fmt: skip
    assert (await allowed.run_once()).passed  # the same probe without the deny list connects
    server.close()
    await server.wait_closed()
    assert len(connections) == 1


class Recorder:
    async def update(self, target: Target, result: CheckResult) -> None:
        return None


async def test_instance_quotas_are_507(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_instances=3, max_instances_per_service=2)
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as c:

        async def register(svc: str, iid: int) -> httpx.Response:
            body = {"service_type": svc, "instance_id": iid, "host": "10.0.0.1", "port": 80}
            return await c.post("/v1/instances", json=body)

        assert [(await register("a", i)).status_code for i in (1, 2)] == [201, 201]
        r = await register("a", 3)
        assert r.status_code == 507 and r.json()["error"]["code"] == "too_many_instances"
        assert (await register("a", 1)).status_code == 200  # an update is always allowed
        assert (await register("b", 1)).status_code == 201
        r = await register("c", 1)
        assert r.status_code == 507 and "--max-instances" in r.json()["error"]["message"]
        r = await c.post("/register", json={"server": "c", "instance_id": 1, "port": 80})
        assert r.status_code == 507  # the legacy route counts too


async def test_a_zone_reload_error_shows_no_path_or_content(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    async with running_app(config(tmp_path)) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        origin = "$ORIGIN corp.internal.\n$TTL 60\n"
        soa = "@ IN SOA ns hostmaster 1 60 60 60 60\n"
        (zones / "corp.zone").write_text(origin + soa + "secret-name IN A not-an-address\n")
        r = await c.post("/v1/zones/reload")
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert message.startswith("corp.zone:")
        assert str(tmp_path) not in r.text and "secret-name" not in r.text
