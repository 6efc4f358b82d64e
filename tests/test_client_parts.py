"""The client's parts without a server: backoff, breaker, settings, metrics, surface."""

from __future__ import annotations

import ast
import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

import dns_client
import jarvis_dns.client
from jarvis_dns.client import DNSClient, ServiceConfig
from jarvis_dns.client._backoff import Backoff
from jarvis_dns.client._breaker import CircuitBreaker
from jarvis_dns.client._config import server_urls
from jarvis_dns.client._health import health_url
from jarvis_dns.client._metrics import MAX_METRICS_BYTES, collect, default_metrics
from jarvis_dns.errors import RegistryUnavailable
from jarvis_dns.models import Check

CLIENT_DIR = Path(jarvis_dns.client.__file__).parent
ALLOWED_IMPORTS = {"jarvis_dns.models", "jarvis_dns.errors", "jarvis_dns.matching", "httpx"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- public surface and layering -----------------------------------------------------


def test_public_surface() -> None:
    assert jarvis_dns.client.__all__ == ["DNSClient", "ServiceConfig"]
    assert dns_client.__all__ == ["DNSClient", "ServiceConfig"]
    assert dns_client.DNSClient is DNSClient and dns_client.ServiceConfig is ServiceConfig
    assert issubclass(RegistryUnavailable, ConnectionError)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CLIENT_DIR.glob("*.py")), ids=lambda p: p.name)
def test_client_imports_no_server_module(path: Path) -> None:
    for name in _imports(path):
        if name.startswith("jarvis_dns.client") or not name.startswith(("jarvis_dns", "aiohttp")):
            continue
        assert name in ALLOWED_IMPORTS, f"{path.name} imports {name}"


# -- backoff -----------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1))
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delay = backoff.delay(attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.delay(10_000) <= 4.0  # no float overflow
    delays = {Backoff(rng=random.Random(seed)).delay(3) for seed in range(5)}
    assert len(delays) == 5  # jittered


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base_s=-1)


# -- circuit breaker -------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_lets_one_trial_per_window() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, reset_s=5.0, clock=clock)
    breaker.failure()
    assert breaker.allow() and not breaker.is_open
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    clock.now = 5.0
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one per window
    breaker.failure()
    clock.now = 9.0
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()


# -- settings --------------------------------------------------------------------------


def test_server_urls_default_env_list_and_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNS_SERVER_URL", raising=False)
    assert server_urls(None) == ["http://127.0.0.1:9000"]
    monkeypatch.setenv("DNS_SERVER_URL", "http://a:1/, http://b:2")
    assert server_urls(None) == ["http://a:1", "http://b:2"]
    assert server_urls(["http://c:3"]) == ["http://c:3"]
    assert server_urls("https://d") == ["https://d"]
    with pytest.raises(ValueError, match="http://"):
        server_urls("ftp://nope")
    with pytest.raises(ValueError):
        server_urls(" , ")


async def test_client_reads_base_port_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASE_PORT", raising=False)
    monkeypatch.delenv("HOST", raising=False)
    async with DNSClient() as client:
        assert (client.base_port, client.host) == (5000, None)
    monkeypatch.setenv("BASE_PORT", "6000")
    monkeypatch.setenv("HOST", "svc.local")
    async with DNSClient(base_port=7000, host="h") as client:
        assert (client.base_port, client.host) == (7000, "h")
    async with DNSClient() as client:
        assert (client.base_port, client.host) == (6000, "svc.local")
    monkeypatch.setenv("BASE_PORT", "many")
    with pytest.raises(ValueError, match="BASE_PORT"):
        DNSClient()


def test_registration_body() -> None:
    config = ServiceConfig("Auth", 2, metadata={"v": 1}, check=Check(type="tcp"))
    body = config.registration_body(5000, None)
    assert body["service_type"] == "auth" and body["port"] == 5002
    assert body["check"]["type"] == "tcp" and "host" not in body and "weight" not in body
    assert ServiceConfig("a", 1, port=9, host="h").registration_body(0, "x")["host"] == "h"
    assert ServiceConfig("a", 1, port=9).registration_body(0, "x")["host"] == "x"
    with pytest.raises(ValueError, match="needs a port"):
        ServiceConfig("a", "blue").registration_body(5000, None)


def test_health_url() -> None:
    assert health_url(None, 80, "/health") == "http://127.0.0.1:80/health"
    assert health_url("0.0.0.0", 80, "health") == "http://127.0.0.1:80/health"
    assert health_url("::1", 81, "/h") == "http://[::1]:81/h"
    assert health_url("svc.local", 82, "/h") == "http://svc.local:82/h"


# -- metrics ---------------------------------------------------------------------------


def test_default_metrics_has_cpu_and_memory_with_psutil() -> None:
    pytest.importorskip("psutil")
    assert set(default_metrics()) == {"cpu_usage", "memory_usage"}


async def test_collect_survives_bad_providers() -> None:
    async def coroutine() -> dict[str, Any]:
        return {"load": 3}

    def broken() -> dict[str, Any]:
        raise OSError("no /proc")

    assert await collect(lambda: {"load": 1}) == {"load": 1}
    assert await collect(coroutine) == {"load": 3}
    assert await collect(broken) == {}
    assert await collect(lambda: [1, 2]) == {}  # type: ignore[arg-type, return-value]
    assert await collect(lambda: {"x": object()}) == {}
    assert await collect(lambda: {"x": "y" * MAX_METRICS_BYTES}) == {}


# -- behaviour through an injected transport (faults a real server cannot make) -----------


async def test_server_errors_fail_over_and_garbage_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "broken":
            return httpx.Response(503, text="maintenance page")
        return httpx.Response(200, text="<html>not jarvis</html>")

    urls = ["http://broken", "http://html"]
    async with DNSClient(urls, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(RegistryUnavailable, match="not JSON"):
            await client.discover_service("web")


async def test_update_status_validation_needs_no_server() -> None:
    async with DNSClient("http://127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="give busy or status"):
            await client.update_status()
        with pytest.raises(ValueError, match="status must be one of"):
            await client.update_status(status="napping")


async def test_update_status_for_a_foreign_instance_is_kept_while_unreachable() -> None:
    calls: list[dict[str, Any]] = []
    up = asyncio.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if not up.is_set():
            raise httpx.ConnectError("refused", request=request)
        calls.append({"path": request.url.path, "body": request.read().decode()})
        return httpx.Response(200, json={"service_type": "web", "instance_id": 1})

    transport = httpx.MockTransport(handler)
    async with DNSClient("http://r", transport=transport, backoff_base_s=0.01) as client:
        assert not await client.update_status(busy=True, service_type="web", instance_id=1)
        assert not await client.update_status(
            status="maintenance", service_type="web", instance_id=1
        )
        up.set()
        for _ in range(200):
            if calls:
                break
            await asyncio.sleep(0.01)
    assert calls[0]["path"] == "/v1/services/web/instances/1/status"
    assert '"busy":true' in calls[0]["body"].replace(" ", "")
    assert '"status":"maintenance"' in calls[0]["body"].replace(" ", "")
