"""DNSClient when servers stop, restart empty, fail over, or the service turns sick."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import eventually as poll_until
from conftest import free_port

from jarvis_dns.app import App
from jarvis_dns.client import DNSClient, ServiceConfig
from jarvis_dns.config import Config
from jarvis_dns.errors import RegistryUnavailable
from jarvis_dns.models import Status


async def start_server(port: int = 0, store: str = "memory://") -> App:
    app = App(Config(http=f"127.0.0.1:{port}", dns=["127.0.0.1:0"], store=store))
    await app.start()
    return app


async def stop_server(app: App) -> None:
    await app.stop()
    await app.close()


@pytest.fixture
async def server() -> AsyncIterator[App]:
    app = await start_server()
    yield app
    await stop_server(app)


def make_client(urls: str | list[str], **kwargs: Any) -> DNSClient:
    options: dict[str, Any] = {
        "heartbeat_interval": 0.05,
        "watch_wait_s": 0.5,
        "metrics_provider": dict,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "breaker_reset_s": 0.1,
    }
    options.update(kwargs)
    return DNSClient(urls, **options)


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    return await poll_until(check, timeout)


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting requests per host:port."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[int | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.ports.append(request.url.port)
        return await super().handle_async_request(request)


async def test_reregisters_with_its_state_after_the_server_restarts_empty() -> None:
    port = free_port()
    first = await start_server(port)
    async with make_client(first.http_url) as client:
        assert await client.register_service(ServiceConfig("auth", 1, port=5001))
        assert await client.update_status(busy=True)
        await stop_server(first)
        second = await start_server(port)  # same address, empty store
        try:
            inst = await eventually(lambda: second.view.find("auth", 1))
            assert inst.busy is True and inst.port == 5001
        finally:
            await client.close()
            await stop_server(second)


async def test_fails_over_to_the_second_url_when_the_first_stops() -> None:
    first, second = await start_server(), await start_server()
    try:
        async with make_client([first.http_url, second.http_url]) as client:
            assert await client.register_service(ServiceConfig("auth", 1, port=5001))
            assert first.view.find("auth", 1) is not None
            assert second.view.find("auth", 1) is None
            await stop_server(first)
            await eventually(lambda: second.view.find("auth", 1))
            found = await eventually(lambda: client.discover_service("auth"))
            assert found["port"] == 5001
            assert await client.update_status(busy=True)
            assert second.view.get("auth", 1).busy is True
        assert second.view.find("auth", 1) is None  # close() deregistered there
    finally:
        await stop_server(second)


async def test_comma_separated_env_means_failover(monkeypatch: pytest.MonkeyPatch) -> None:
    server = await start_server()
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DNS_SERVER_URL", f"{dead}, {server.http_url}")
    try:
        async with DNSClient(heartbeat_interval=0.05) as client:
            assert client.urls == [dead, server.http_url]
            assert await client.register_service(ServiceConfig("auth", 1, port=5001))
            assert server.view.find("auth", 1) is not None
    finally:
        await stop_server(server)


async def test_stale_if_error_then_unavailable_past_max_staleness(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    server = await start_server()
    client = make_client(server.http_url, clock=lambda: now[0], max_stale_s=60.0)
    try:
        assert await client.register_service(ServiceConfig("auth", 1, port=5001))
        assert await client.discover_service("auth") is not None
        await stop_server(server)
        await asyncio.sleep(0.1)  # the long-poll sees the connection drop
        with caplog.at_level(logging.WARNING, "jarvis_dns.client"):
            now[0] = 30.0
            for _ in range(3):
                found = await client.discover_service("auth", {"busy": False})
                assert found is not None and found["port"] == 5001
        stale_lines = [r for r in caplog.records if "from the list of" in r.getMessage()]
        assert len(stale_lines) == 1  # logged once per outage, not per call
        now[0] = 61.0
        with pytest.raises(RegistryUnavailable):
            await client.discover_service("auth")
    finally:
        await client.close()


async def test_discovery_with_no_server_and_no_cache_raises() -> None:
    async with make_client(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectionError):
            await client.discover_service("auth")


async def test_status_set_during_an_outage_is_applied_on_reconnect(tmp_path: Path) -> None:
    port, store = free_port(), f"sqlite:///{tmp_path / 'registry.db'}"
    server = await start_server(port, store)
    client = make_client(server.http_url)
    try:
        assert await client.register_service(ServiceConfig("auth", 1, port=5001))
        await stop_server(server)
        # Unreachable: remembered, not raised.
        assert await client.update_status(busy=True, status="maintenance") is False
        server = await start_server(port, store)  # same store: the instance is still known
        inst = await eventually(
            lambda: (i := server.view.find("auth", 1)) and i.status is Status.MAINTENANCE and i
        )
        assert inst.busy is True
    finally:
        await client.close()
        await stop_server(server)


async def test_outage_logged_once_and_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = await start_server(port)
    client = make_client(server.http_url)
    try:
        with caplog.at_level(logging.INFO, "jarvis_dns.client"):
            assert await client.register_service(ServiceConfig("auth", 1, port=5001))
            await stop_server(server)
            await asyncio.sleep(0.5)  # many heartbeat attempts
            server = await start_server(port)
            await eventually(lambda: server.view.find("auth", 1))
        messages = [r.getMessage() for r in caplog.records]
        assert sum("registry unreachable (" in m for m in messages) == 1
        assert sum("reachable again" in m for m in messages) == 1
    finally:
        await client.close()
        await stop_server(server)


async def test_breaker_stops_hammering_a_dead_url(server: App) -> None:
    dead_port = free_port()
    transport = CountingTransport()
    client = make_client(
        [f"http://127.0.0.1:{dead_port}", server.http_url],
        transport=transport,
        breaker_threshold=2,
        breaker_reset_s=60.0,
    )
    async with client:
        assert await client.register_service(ServiceConfig("auth", 1, port=5001))
        await asyncio.sleep(0.3)  # about six heartbeats
        for _ in range(10):
            await client.discover_service("auth", strategy="least_loaded")  # direct reads
    # register_service forces one try; the breaker allows two failures, then none.
    assert transport.ports.count(dead_port) <= 3
    assert transport.ports.count(server.http_port) >= 10


# -- the self health check ---------------------------------------------------------------


class FakeService:
    """A real HTTP service whose /health answer the test sets."""

    def __init__(self) -> None:
        self.status, self.body = 200, {"status": "healthy", "busy": False}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self.body, status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self.health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_self_health_check_reports_busy_dead_and_back(server: App) -> None:
    service = FakeService()
    await service.start()
    client = make_client(server.http_url, health_check_interval=0.02, heartbeat_interval=1.0)
    try:
        config = ServiceConfig("api", 1, port=service.port, health_path="/health")
        assert await client.register_service(config)
        service.body = {"status": "healthy", "busy": True}
        await eventually(lambda: server.view.get("api", 1).busy)
        service.status = 500
        await eventually(lambda: server.view.get("api", 1).status is Status.DEAD)
        service.status, service.body = 200, {"busy": False}
        inst = await eventually(
            lambda: (i := server.view.get("api", 1)).status is Status.ACTIVE and i
        )
        await eventually(lambda: server.view.get("api", 1).busy is False)
        assert inst.port == service.port
    finally:
        await client.close()
        await service.stop()
