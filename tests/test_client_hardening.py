"""The client against hostile or broken servers on loopback: one deadline for the whole
request (a byte-a-second server), a 1 MiB cap on answers (a 300 MB body, declared or
streamed), every wrong shape a documented RegistryError, tokens and TLS settings."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from jarvis_dns.client import DNSClient, ServiceConfig
from jarvis_dns.client._transport import MAX_RESPONSE_BYTES, Transport
from jarvis_dns.errors import BadResponse, RegistryError, RegistryUnavailable, ResponseTooLarge

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def transport(url: str, timeout_s: float = 1.0) -> Transport:
    return Transport(
        [url],
        transport=None,
        timeout_s=timeout_s,
        breaker_threshold=100,
        breaker_reset_s=1.0,
        clock=time.monotonic,
    )


async def test_a_byte_a_second_server_is_cut_at_the_deadline() -> None:
    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b" ")  # each byte restarts httpx's read timeout
            await asyncio.sleep(0.1)
        return response

    async with serving(drip) as url:
        t = transport(url, timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match="within 1s"):
            await t.request("GET", "/v1/services/x")
        assert time.monotonic() - started < 2.0
        await t.aclose()


async def test_a_declared_300mb_body_is_refused_unread() -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 300 * 2**20
        await response.prepare(request)
        await response.write(b"x" * 65536)
        return response

    async with serving(huge) as url:
        t = transport(url, timeout_s=5.0)
        with pytest.raises(RegistryUnavailable, match="cap"):
            await t.request("GET", "/v1/services/x")
        await t.aclose()


async def test_a_streamed_300mb_body_is_cut_at_1mib_in_bounded_memory() -> None:
    sent = 0

    async def stream(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()  # chunked: no length to refuse it by
        await response.prepare(request)
        chunk = b"x" * 65536
        while sent < 300 * 2**20:
            await response.write(chunk)
            sent += len(chunk)
        return response

    async with serving(stream) as url:
        t = transport(url, timeout_s=10.0)
        tracemalloc.start()
        try:
            with pytest.raises(RegistryUnavailable, match="cap"):
                await t.request("GET", "/v1/services/x")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await t.aclose()
    assert peak < 16 * MAX_RESPONSE_BYTES, peak
    assert sent < 100 * 2**20  # the server was stopped long before 300 MB


async def test_the_cap_error_is_a_documented_subclass() -> None:
    assert issubclass(ResponseTooLarge, BadResponse)
    assert issubclass(BadResponse, RegistryUnavailable)
    assert issubclass(RegistryUnavailable, RegistryError)


@pytest.mark.parametrize("body", [b"[1,2,3]", b"7", b'"x"', b"null", b"not json", b"[" * 50_000])
async def test_every_wrong_shape_is_a_registry_error(body: bytes) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, status=201, content_type="application/json")

    async with serving(answer) as url:
        client = DNSClient(url, register_attempts=1, sleep=_no_sleep)
        try:
            with pytest.raises(RegistryUnavailable, match="answered"):
                await client.register_service(ServiceConfig("svc", 1, port=80))
            # documented errors only: an AttributeError or a TypeError fails the test
            with contextlib.suppress(RegistryError):
                await client.discover_all("svc")
            with contextlib.suppress(RegistryError):
                await client.update_status(True, service_type="svc", instance_id=1)
        finally:
            await client.close()


async def _no_sleep(seconds: float) -> None:
    return None


async def test_token_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"service_type": "svc", "index": 0, "instances": []})

    async with serving(record) as url:
        async with DNSClient(url, token="s3cret") as client:
            await client.discover_all("svc")
        monkeypatch.setenv("JARVIS_DNS_TOKEN", "from-env")
        async with DNSClient(url) as client:
            await client.discover_all("other")
    assert seen[0] == "Bearer s3cret" and seen[-1] == "Bearer from-env"


async def test_a_wrong_shape_after_registration_is_a_registry_error() -> None:
    instance = {"service_type": "svc", "instance_id": 1, "host": "h", "port": 80}

    async def answer(request: web.Request) -> web.Response:
        if request.method == "POST":
            return web.json_response(instance, status=201)
        return web.json_response([1, 2, 3])  # status, heartbeat, list: all the wrong shape

    async with serving(answer) as url:
        client = DNSClient(url, register_attempts=1, sleep=_no_sleep)
        try:
            assert await client.register_service(ServiceConfig("svc", 1, port=80))
            # a BadResponse is a RegistryUnavailable: the status is kept to send again
            assert await client.update_status(True, service_type="svc", instance_id=1) is False
            with pytest.raises(RegistryError):
                await client.discover_all("svc")
        finally:
            await client.close()
