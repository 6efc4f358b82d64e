"""HTTP to the registry: several server URLs in failover order, a breaker for each."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from jarvis_dns.client._breaker import CircuitBreaker
from jarvis_dns.client._types import Clock
from jarvis_dns.errors import RegistryUnavailable

log = logging.getLogger("jarvis_dns.client")

# A registry that cannot even accept a TCP connection within 2 s is as good as down;
# the next URL is worth more than waiting longer.
CONNECT_TIMEOUT_S = 2.0


@dataclass(slots=True)
class _Server:
    url: str
    breaker: CircuitBreaker


class Transport:
    """Sends one request to the first registry server that answers.

    A server "answers" when it returns any status below 500; connection errors,
    timeouts and 5xx count against its breaker and move on to the next URL. When no
    server answered, RegistryUnavailable is raised and the outage is logged once.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        transport: httpx.AsyncBaseTransport | None,
        timeout_s: float,
        breaker_threshold: int,
        breaker_reset_s: float,
        clock: Clock,
    ) -> None:
        self._servers = [
            _Server(_normal(url), CircuitBreaker(breaker_threshold, breaker_reset_s, clock))
            for url in urls
        ]
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
        self.http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._down = False
        self._serving: str | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self._servers]

    def preferred_url(self) -> str | None:
        """The URL the next request would try first."""
        for server in self._servers:
            if not server.breaker.is_open:
                return server.url
        return None

    def server_of(self, response: httpx.Response) -> str:
        # Compared in httpx's own spelling of URLs (see _normal), or nothing would match.
        """Which configured server URL produced this response."""
        sent = str(response.request.url)
        return next((s.url for s in self._servers if sent.startswith(s.url)), sent)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        force: bool = False,
    ) -> httpx.Response:
        """Send to each server in order until one answers; `force` ignores open breakers."""
        errors: list[str] = []
        for server in self._servers:
            if not (server.breaker.allow() or force):
                errors.append(f"{server.url}: circuit open")
                continue
            try:
                response = await self._send(server.url + path, method, json, params, timeout_s)
            except httpx.TransportError as exc:
                errors.append(f"{server.url}: {_describe(exc)}")
                server.breaker.failure()
                continue
            if response.status_code >= 500:
                errors.append(f"{server.url}: HTTP {response.status_code}")
                server.breaker.failure()
                continue
            server.breaker.success()
            self._answered(server.url)
            return response
        self._unanswered(errors)
        raise RegistryUnavailable("no registry server answered (" + "; ".join(errors) + ")")

    async def _send(
        self,
        url: str,
        method: str,
        json: Any,
        params: Mapping[str, str] | None,
        timeout_s: float | None,
    ) -> httpx.Response:
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if timeout_s is not None:
            timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
        return await self.http.request(method, url, json=json, params=params, timeout=timeout)

    def _answered(self, url: str) -> None:
        if self._down:
            log.info("registry reachable again at %s", url)
        elif self._serving is not None and url != self._serving:
            log.info("registry server %s answers instead of %s", url, self._serving)
        self._down = False
        self._serving = url

    def _unanswered(self, errors: list[str]) -> None:
        # One line per outage, not one per heartbeat: the first failure says it all.
        if not self._down:
            log.warning("registry unreachable (%s); retrying in the background", "; ".join(errors))
        self._down = True

    async def aclose(self) -> None:
        await self.http.aclose()


def _describe(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__


def _normal(url: str) -> str:
    """A URL as httpx spells the requests it sends (lower-case host, no default port, no
    trailing slash), so a response can be traced back to the server it came from."""
    return str(httpx.URL(url)).rstrip("/")
