"""A FastAPI service registered with jarvis-dns for exactly its lifetime.

    DNS_SERVER_URL=http://127.0.0.1:9000 PORT=5003 python fastapi_service.py

The registration lives in the lifespan: registered before the first request,
deregistered (and heartbeats stopped) at shutdown. FastAPI and uvicorn are the
service's dependencies, not jarvis-dns's.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from dns_client import DNSClient, ServiceConfig

PORT = int(os.environ.get("PORT", "5003"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with DNSClient() as client:  # DNS_SERVER_URL and HOST from the environment
        config = ServiceConfig(
            service_type="user-service",
            instance_id=1,
            port=PORT,
            metadata={"version": "1.0", "database": "postgres"},
        )
        if not await client.register_service(config):
            raise RuntimeError("jarvis-dns refused the registration (see the log)")
        app.state.dns = client
        yield
    # Leaving the block deregistered the service.


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "healthy", "busy": False}


@app.get("/auth-target")
async def auth_target(request: Request) -> dict[str, str]:
    client: DNSClient = request.app.state.dns
    auth = await client.discover_service("authentication-service", {"busy": False})
    if auth is None:
        raise HTTPException(503, "no idle authentication-service")
    return {"auth": f"{auth['host']}:{auth['port']}"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=PORT)
