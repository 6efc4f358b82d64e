"""DNSClient against a real in-process jarvis-dns: registration, discovery, status."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from conftest import eventually as poll_until
from conftest import free_port

from dns_client import DNSClient as ShimClient
from jarvis_dns.app import App
from jarvis_dns.client import DNSClient, ServiceConfig
from jarvis_dns.config import Config
from jarvis_dns.errors import RegistryUnavailable, ValidationError
from jarvis_dns.models import Status

AUTH_METADATA = {"version": "1.0", "capabilities": ["oauth", "jwt"], "max_connections": 1000}
README_KEYS = {"service_type", "instance_id", "host", "port", "metadata", "status", "busy"}


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting requests per path (to see what the client costs)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


@pytest.fixture
async def server() -> AsyncIterator[App]:
    app = App(Config(http="127.0.0.1:0", dns=["127.0.0.1:0"], store="memory://"))
    await app.start()
    yield app
    await app.stop()
    await app.close()


def make_client(app: App, **kwargs: Any) -> DNSClient:
    options: dict[str, Any] = {
        "heartbeat_interval": 0.05,
        "watch_wait_s": 1.0,
        "metrics_provider": lambda: {"load": 1},
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
    }
    options.update(kwargs)
    return DNSClient(app.http_url, **options)


@pytest.fixture
async def client(server: App) -> AsyncIterator[DNSClient]:
    async with make_client(server) as c:
        yield c


async def eventually(check: Callable[[], Any], timeout: float = 3.0) -> Any:
    return await poll_until(check, timeout)


async def register(client: DNSClient, svc: str, iid: int, **kwargs: Any) -> None:
    kwargs.setdefault("port", 6000 + iid)
    assert await client.register_service(ServiceConfig(svc, iid, **kwargs))


# -- registration -------------------------------------------------------------------


async def test_readme_flow_register_discover_update_close(server: App) -> None:
    client = ShimClient(dns_url=server.http_url, base_port=5000)
    config = ServiceConfig("authentication-service", 1, port=5001, metadata=AUTH_METADATA)
    assert await client.register_service(config) is True
    requirements = {"version": "1.0", "capabilities": ["oauth"], "busy": False}
    found = await client.discover_service("authentication-service", requirements=requirements)
    assert found is not None and set(found) >= README_KEYS
    assert (found["instance_id"], found["port"], found["host"]) == (1, 5001, "127.0.0.1")
    assert found["metadata"] == AUTH_METADATA and found["status"] == "active"
    assert await client.update_status(busy=True) is True
    assert await client.discover_service("authentication-service", requirements) is None
    await client.close()
    assert server.view.find("authentication-service", 1) is None


async def test_port_defaults_to_base_port_plus_instance_id(server: App) -> None:
    async with make_client(server, base_port=7000) as client:
        assert await client.register_service(ServiceConfig("worker", 3))
        inst = server.view.get("worker", 3)
        assert inst.port == 7003


async def test_base_port_and_host_come_from_the_environment(
    server: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASE_PORT", "8100")
    monkeypatch.setenv("HOST", "10.1.2.3")
    async with make_client(server) as client:
        assert await client.register_service(ServiceConfig("worker", 2))
        inst = server.view.get("worker", 2)
        assert (inst.host, inst.port) == ("10.1.2.3", 8102)


async def test_config_fields_reach_the_server(client: DNSClient, server: App) -> None:
    check = {"type": "tcp", "interval_s": 30.0}
    config = ServiceConfig("db", "primary", port=5432, host="db.local", weight=7, ttl_s=45.0)
    config.check, config.deregister_after_s, config.busy = check, 120.0, True
    assert await client.register_service(config)
    inst = server.view.get("db", "primary")
    assert (inst.host, inst.weight, inst.ttl_s, inst.busy) == ("db.local", 7, 45.0, True)
    assert inst.check is not None and inst.check.type == "tcp"
    assert inst.deregister_after_s == 120.0


async def test_refused_registration_returns_false_and_logs_why(
    client: DNSClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "jarvis_dns.client"):
        assert await client.register_service(ServiceConfig("bad_name!", 1, port=1)) is False
    assert "service_type" in caplog.text


async def test_register_raises_registry_unavailable_after_the_last_attempt() -> None:
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    url = f"http://127.0.0.1:{free_port()}"
    async with DNSClient(url, register_attempts=4, sleep=record) as client:
        with pytest.raises(ConnectionError) as raised:
            await client.register_service(ServiceConfig("svc", 1, port=1))
    assert isinstance(raised.value, RegistryUnavailable)
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2] <= 10.0  # growing, jittered, capped


# -- heartbeats -----------------------------------------------------------------------


async def test_two_services_on_one_client_both_heartbeat(client: DNSClient, server: App) -> None:
    await register(client, "alpha", 1)
    await register(client, "beta", 1)
    first = {s: server.view.get(s, 1).last_heartbeat for s in ("alpha", "beta")}
    await eventually(lambda: all(server.view.get(s, 1).last_heartbeat > first[s] for s in first))
    assert server.view.get("alpha", 1).metrics == {"load": 1}


async def test_heartbeat_logs_success_at_debug(
    client: DNSClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "jarvis_dns.client"):
        await register(client, "alpha", 1)
        await eventually(lambda: "Heartbeat sent successfully" in caplog.text)
    beats = [r for r in caplog.records if "Heartbeat sent successfully" in r.getMessage()]
    assert beats[0].levelno == logging.DEBUG


async def test_async_metrics_provider(server: App) -> None:
    async def metrics() -> dict[str, Any]:
        return {"connections": 156}

    async with make_client(server, metrics_provider=metrics) as client:
        await register(client, "alpha", 1)
        await eventually(lambda: server.view.get("alpha", 1).metrics == {"connections": 156})


# -- status ---------------------------------------------------------------------------


async def test_dead_status_sticks_until_active_again(client: DNSClient, server: App) -> None:
    await register(client, "alpha", 1)
    assert await client.update_status(status="dead")
    await asyncio.sleep(0.2)  # several heartbeat intervals: none may revive it
    assert server.view.get("alpha", 1).status is Status.DEAD
    assert await client.discover_service("alpha") is None
    assert await client.update_status(status="active")
    assert (await client.discover_service("alpha")) is not None


async def test_maintenance_is_not_discovered(client: DNSClient) -> None:
    await register(client, "alpha", 1)
    await register(client, "alpha", 2)
    assert await client.update_status(status="maintenance", instance_id=1)
    assert [i["instance_id"] for i in await client.discover_all("alpha")] == [2]


async def test_update_status_of_an_instance_registered_elsewhere(
    client: DNSClient, server: App
) -> None:
    async with make_client(server) as operator:
        await register(client, "alpha", 1)
        assert await operator.update_status(busy=True, service_type="alpha", instance_id=1)
        assert server.view.get("alpha", 1).busy is True


async def test_update_status_without_a_registration_warns(
    client: DNSClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert await client.update_status(busy=True) is False
    assert "registered no matching service" in caplog.text


async def test_update_status_rejects_unknown_status(client: DNSClient) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        await client.update_status(status="sleeping")


# -- discovery ------------------------------------------------------------------------

REQUIREMENT_CASES = [
    ({"version": "1.0"}, [1]),
    ({"capabilities": ["oauth"]}, [1, 2]),
    ({"capabilities": ["oauth", "jwt"]}, [1]),
    ({"capabilities": "saml"}, [2]),
    ({"max_connections": {"$gt": 500}}, [1]),
    ({"max_connections": {"$gte": 100, "$lt": 1000}}, [2]),
    ({"version": {"$in": ["2.0", "3.0"]}}, [2]),
    ({"version": {"$nin": ["2.0"]}}, [1]),
    ({"version": {"$ne": "1.0"}}, [2]),
    ({"region": {"$exists": True}}, [2]),
    ({"region": {"$exists": False}}, [1]),
    ({"version": {"$contains": "2."}}, [2]),
    ({"limits.rps": {"$lte": 50}}, [2]),
    ({"busy": True}, [2]),
    ({"busy": False, "capabilities": ["oauth"]}, [1]),
    ({"status": "active"}, [1, 2]),
    ({"version": "9.9"}, []),
]


@pytest.mark.parametrize(("requirements", "expected"), REQUIREMENT_CASES)
async def test_requirement_forms(
    client: DNSClient, requirements: dict[str, Any], expected: list[int]
) -> None:
    await register(client, "auth", 1, metadata=AUTH_METADATA)
    meta2 = {
        "version": "2.0",
        "capabilities": ["oauth", "saml"],
        "max_connections": 100,
        "region": "eu",
        "limits": {"rps": 50},
    }
    await register(client, "auth", 2, metadata=meta2, busy=True)
    found = await client.discover_all("auth", requirements)
    assert [i["instance_id"] for i in found] == expected
    one = await client.discover_service("auth", requirements)
    assert (one["instance_id"] if one else None) in (expected or [None])


async def test_round_robin_cycles_through_every_match(client: DNSClient) -> None:
    for iid in (1, 2, 3):
        await register(client, "web", iid)
    picks = [(await client.discover_service("web"))["instance_id"] for _ in range(6)]  # type: ignore[index]
    assert picks == [1, 2, 3, 1, 2, 3]


async def test_random_and_weighted_pick_matching_instances(server: App) -> None:
    async with make_client(server, rng=random.Random(7)) as client:
        await register(client, "web", 1, weight=1)
        await register(client, "web", 2, weight=1000)
        randoms = {
            (await client.discover_service("web", strategy="random"))["instance_id"]  # type: ignore[index]
            for _ in range(40)
        }
        weighted = [
            (await client.discover_service("web", strategy="weighted"))["instance_id"]  # type: ignore[index]
            for _ in range(40)
        ]
    assert randoms == {1, 2}
    assert weighted.count(2) >= 35


async def test_least_loaded_uses_current_heartbeat_metrics(server: App) -> None:
    loads = {"1": 90, "2": 10}

    async with (
        make_client(server, metrics_provider=lambda: {"load": loads["1"]}) as one,
        make_client(server, metrics_provider=lambda: {"load": loads["2"]}) as two,
    ):
        await register(one, "web", 1)
        await register(two, "web", 2)

        async def least() -> int:
            found = await one.discover_service("web", strategy="least_loaded")
            assert found is not None
            return int(found["instance_id"])

        await eventually(lambda: server.view.get("web", 2).metrics == {"load": 10})
        assert await least() == 2
        loads["1"], loads["2"] = 5, 80
        await eventually(lambda: server.view.get("web", 2).metrics == {"load": 80})
        await eventually(lambda: server.view.get("web", 1).metrics == {"load": 5})
        assert await least() == 1


async def test_consistent_hash_is_stable_per_key(client: DNSClient) -> None:
    for iid in (1, 2, 3, 4):
        await register(client, "cache", iid)
    picks = {}
    for key in ("user-1", "user-2", "user-3"):
        found = [
            (await client.discover_service("cache", strategy="consistent_hash", key=key))
            for _ in range(3)
        ]
        ids = {f["instance_id"] for f in found if f}
        assert len(ids) == 1
        picks[key] = ids.pop()
    with pytest.raises(ValidationError):
        await client.discover_service("cache", strategy="consistent_hash")


async def test_unknown_service_and_bad_input(client: DNSClient) -> None:
    assert await client.discover_service("nobody-home") is None
    assert await client.discover_all("nobody-home") == []
    with pytest.raises(ValidationError):
        await client.discover_service("web", strategy="fastest")
    with pytest.raises(ValidationError):
        await client.discover_service("web", requirements={"x": {"$near": 1}})
    with pytest.raises(ValidationError):
        await client.discover_service("Not A Label!")


async def test_discovered_dicts_are_copies(client: DNSClient) -> None:
    await register(client, "web", 1, metadata={"tags": ["a"]})
    found = await client.discover_service("web")
    assert found is not None
    found["metadata"]["tags"].append("mutated")
    again = await client.discover_service("web")
    assert again is not None and again["metadata"] == {"tags": ["a"]}


# -- the cache and blocking queries ------------------------------------------------------


async def test_a_change_reaches_the_cache_within_100ms(server: App) -> None:
    transport = CountingTransport()
    async with (
        make_client(server, watch_wait_s=30.0, transport=transport) as reader,
        make_client(server) as writer,
    ):
        await register(writer, "web", 1)
        assert (await reader.discover_service("web", {"busy": False})) is not None
        # The first read, then the long-poll (sent now, parked on the server once it lands).
        await eventually(lambda: len(transport.paths) >= 2)
        await asyncio.sleep(0.2)
        requests_before = len(transport.paths)
        await asyncio.sleep(0.3)
        assert len(transport.paths) == requests_before  # steady state: one idle long-poll

        # The clock starts when the server commits the change, not when the writer sends it:
        # the writer's own round trip is not part of how fast a change reaches a cache.
        committed: list[float] = []
        server.changes.subscribe(lambda events: committed.append(time.monotonic()))
        assert await writer.update_status(busy=True)
        assert committed, "the update changed nothing on the server"
        while await reader.discover_service("web", {"busy": False}) is not None:
            assert time.monotonic() - committed[0] < 0.1, "change took more than 100 ms"
            await asyncio.sleep(0.002)
        # Discovery answered from the cache: only the long-poll touched the network.
        assert all(p == "/v1/services/web" for p in transport.paths)


async def test_watch_yields_the_list_then_each_change(client: DNSClient, server: App) -> None:
    async with make_client(server) as other:
        seen: list[list[tuple[Any, bool]]] = []

        async def follow() -> None:
            async for instances in client.watch("web"):
                seen.append([(i["instance_id"], i["busy"]) for i in instances])
                if len(seen) == 3:
                    return

        follower = asyncio.create_task(follow())
        await eventually(lambda: seen)
        await register(other, "web", 1)
        await eventually(lambda: len(seen) >= 2)
        await other.update_status(busy=True)
        await asyncio.wait_for(follower, 3.0)
    assert seen == [[], [(1, False)], [(1, True)]]


async def test_watch_ends_when_the_client_closes(server: App) -> None:
    client = make_client(server)
    items = []

    async def follow() -> None:
        async for instances in client.watch("web"):
            items.append(instances)

    follower = asyncio.create_task(follow())
    await eventually(lambda: items)
    await client.close()
    await asyncio.wait_for(follower, 2.0)


# -- closing ----------------------------------------------------------------------------


async def test_close_is_idempotent_and_deregisters_everything(server: App) -> None:
    client = make_client(server)
    await register(client, "alpha", 1)
    await register(client, "beta", 2)
    await client.close()
    await client.close()
    await asyncio.gather(client.close(), client.close())
    assert server.view.find("alpha", 1) is None and server.view.find("beta", 2) is None
    with pytest.raises(RuntimeError, match="closed"):
        await client.register_service(ServiceConfig("alpha", 1, port=1))
    with pytest.raises(RuntimeError, match="closed"):
        await client.discover_service("alpha")


async def test_async_with_deregisters_on_exit(server: App) -> None:
    async with make_client(server) as client:
        await register(client, "alpha", 1)
        assert server.view.find("alpha", 1) is not None
    assert server.view.find("alpha", 1) is None


async def test_deregister_service_stops_one_of_several(client: DNSClient, server: App) -> None:
    await register(client, "alpha", 1)
    await register(client, "alpha", 2)
    assert await client.deregister_service("alpha", 1)
    await asyncio.sleep(0.15)  # a stray heartbeat would re-register it
    assert server.view.find("alpha", 1) is None
    assert [i["instance_id"] for i in await client.discover_all("alpha")] == [2]
