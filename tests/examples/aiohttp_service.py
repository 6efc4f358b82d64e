"""An aiohttp service registered with jarvis-dns for exactly its lifetime.

    DNS_SERVER_URL=http://127.0.0.1:9000 PORT=5002 python aiohttp_service.py

The registration lives in a cleanup context: registered before the first request,
deregistered (and heartbeats stopped) when the app shuts down.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from dns_client import DNSClient, ServiceConfig

DNS = web.AppKey("dns", DNSClient)


def registry_context(port: int) -> web.CleanupContext:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with DNSClient() as client:  # DNS_SERVER_URL and HOST from the environment
            config = ServiceConfig(
                service_type="orders",
                instance_id=1,
                port=port,
                metadata={"version": "2.1", "capabilities": ["checkout"]},
                health_path="/health",  # the client reports busy from our own answer
            )
            if not await client.register_service(config):
                raise RuntimeError("jarvis-dns refused the registration (see the log)")
            app[DNS] = client
            yield
        # Leaving the block deregistered the service.

    return context


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy", "busy": False})


async def auth_target(request: web.Request) -> web.Response:
    """Where this service would send a login: an idle OAuth-capable auth instance."""
    auth = await request.app[DNS].discover_service(
        "authentication-service", requirements={"capabilities": ["oauth"], "busy": False}
    )
    if auth is None:
        raise web.HTTPServiceUnavailable(text="no idle authentication-service")
    return web.json_response({"auth": f"{auth['host']}:{auth['port']}"})


def make_app(port: int) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(registry_context(port))
    app.router.add_get("/health", health)
    app.router.add_get("/auth-target", auth_target)
    return app


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5002"))
    web.run_app(make_app(port), host="127.0.0.1", port=port)
