"""HTTP to the registry: several server URLs in failover order, a breaker for each.

Every request has one deadline for all of it (connect, headers, body): httpx's own
timeouts restart with every byte, so a server sending a byte a second would hold a
request forever. Answers are read up to MAX_RESPONSE_BYTES and no further.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from jarvis_dns.client._breaker import CircuitBreaker
from jarvis_dns.client._types import Clock
from jarvis_dns.errors import RegistryUnavailable, ResponseTooLarge

log = logging.getLogger("jarvis_dns.client")

# A registry that cannot even accept a TCP connection within 2 s is as good as down;
# the next URL is worth more than waiting longer.
CONNECT_TIMEOUT_S = 2.0
# The largest answer read: a service list of about 1,500 instances. A bigger one is a
# server gone wrong (or not a registry), and reading it whole could exhaust memory.
MAX_RESPONSE_BYTES = 1 << 20
Verify = ssl.SSLContext | str | bool
Cert = str | tuple[str, str] | None


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
        token: str | None = None,
        verify: Verify = True,
        cert: Cert = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._servers = [
            _Server(_normal(url), CircuitBreaker(breaker_threshold, breaker_reset_s, clock))
            for url in urls
        ]
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.http = httpx.AsyncClient(
            transport=transport, timeout=timeout, headers=headers, verify=tls(verify, cert)
        )
        self._timeout_s = timeout_s
        self._max_bytes = max_response_bytes
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
            except (httpx.TransportError, ResponseTooLarge) as exc:
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
        request = self.http.build_request(method, url, json=json, params=params, timeout=timeout)
        deadline = self._timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(deadline):
                response = await self.http.send(request, stream=True)
                try:
                    body = await self._read(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"no whole answer within {deadline:g}s", request=request
            ) from None
        # The body is decoded already: the copy must not claim an encoding or a length.
        headers = [
            (k, v) for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]  # fmt: skip
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    async def _read(self, response: httpx.Response) -> bytes:
        limit = self._max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(f"an answer of {declared} bytes, over the {limit} cap")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(f"an answer over the {limit}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

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


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def tls(verify: Verify, cert: Cert) -> ssl.SSLContext | bool:
    """httpx's verify= from a CA bundle path, a context or a bool, plus a client cert
    (httpx 0.28 deprecates passing paths and cert= itself)."""
    if isinstance(verify, bool) and cert is None:
        return verify
    if isinstance(verify, ssl.SSLContext):
        context = verify
    else:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        context.load_cert_chain(certfile, keyfile)
    return context


def _normal(url: str) -> str:
    """A URL as httpx spells the requests it sends (lower-case host, no default port, no
    trailing slash), so a response can be traced back to the server it came from."""
    return str(httpx.URL(url)).rstrip("/")
