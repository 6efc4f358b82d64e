"""The optional self health check: probe the service's own health endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from jarvis_dns.client._types import Sleep

# (healthy, busy) -> None; busy is None when the answer did not say.
Report = Callable[[bool, bool | None], Awaitable[None]]


def health_url(host: str | None, port: int, path: str) -> str:
    """Where the service's own endpoint is; a wildcard or missing host means this host."""
    if host in (None, "", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in str(host):
        host = f"[{host}]"
    return f"http://{host}:{port}/{path.lstrip('/')}"


@dataclass(slots=True)
class HealthProbe:
    """Every `interval_s`, GET the endpoint: 2xx is healthy, and a JSON `busy` is busy."""

    url: str
    http: httpx.AsyncClient
    interval_s: float
    timeout_s: float
    sleep: Sleep
    report: Report

    async def run(self) -> None:
        while True:
            # Probe after a first interval: at registration the service may not serve yet.
            await self.sleep(self.interval_s)
            healthy, busy = await self.probe()
            await self.report(healthy, busy)

    async def probe(self) -> tuple[bool, bool | None]:
        try:
            response = await self.http.get(self.url, timeout=self.timeout_s)
        except httpx.HTTPError:
            return False, None
        if not response.is_success:
            return False, None
        try:
            body = response.json()
        except ValueError:
            return True, None
        busy = body.get("busy") if isinstance(body, dict) else None
        return True, busy if isinstance(busy, bool) else None
