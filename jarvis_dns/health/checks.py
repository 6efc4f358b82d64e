"""Active checks: one small type per kind, each its own periodic task (Consul's design).

A check starts after a random stagger within its interval (so a restart does not probe
the whole fleet in the same second), never runs more often than MIN_INTERVAL_S, takes
a slot from the shared limiter for each probe, and reports only through a one-method
Notifier. Its output is capped at 4 KiB.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from jarvis_dns.deny import denied
from jarvis_dns.health.limiter import Limiter
from jarvis_dns.health.outcome import CheckResult, failure, interpret_http
from jarvis_dns.health.targets import MIN_INTERVAL_S
from jarvis_dns.models import Check

log = logging.getLogger("jarvis_dns.health")

# A health body is a small JSON document; reading more only costs memory.
MAX_BODY_BYTES = 64 * 1024
HEADERS = {"User-Agent": "jarvis-dns health check", "Accept": "application/json, */*"}


@dataclass(frozen=True, slots=True)
class Target:
    """What to probe, with the check's settings already resolved."""

    service_type: str
    instance_key: str
    host: str
    port: int
    check: Check
    deny: tuple[str, ...] = ()  # --check-deny, asked again of what a name resolves to

    @property
    def key(self) -> tuple[str, str]:
        return (self.service_type, self.instance_key)

    @property
    def interval_s(self) -> float:
        # resolve_check fills it in; an unresolved check means the stock 60 s default
        return 60.0 if self.check.interval_s is None else self.check.interval_s

    @property
    def timeout_s(self) -> float:
        return 5.0 if self.check.timeout_s is None else self.check.timeout_s

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.check.path}"


class Notifier(Protocol):
    async def update(self, target: Target, result: CheckResult) -> None: ...


class PeriodicCheck(abc.ABC):
    """The schedule every check kind shares; subclasses only say how to probe."""

    def __init__(
        self, target: Target, notifier: Notifier, limiter: Limiter, rng: random.Random
    ) -> None:
        self.target = target
        self._notifier = notifier
        self._limiter = limiter
        self._rng = rng
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def probe(self) -> CheckResult:
        """One probe, without timeout handling; may raise OSError or aiohttp errors."""

    async def run_once(self) -> CheckResult:
        """One probe within the check's timeout; every failure becomes a result."""
        timeout = self.target.timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self.probe()
        except TimeoutError:
            return failure(f"timeout after {timeout:g}s")
        except (OSError, EOFError, ValueError, aiohttp.ClientError) as exc:
            return failure(f"{type(exc).__name__}: {exc}".rstrip(": "))
        except Exception as exc:  # whatever else a probe meets, the check lives on
            log.exception("probe of %s/%s failed unexpectedly", *self.target.key)
            return failure(f"{type(exc).__name__}: {exc}".rstrip(": "))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"check {self.target.key}")

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop without waiting; returns the task so a caller may await it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def stop(self) -> None:
        task = self.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(self.target.interval_s, MIN_INTERVAL_S)
        due = loop.time() + self._rng.uniform(0, interval)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            async with self._limiter.slot(lag=loop.time() - due):
                result = await self.run_once()
            self._limiter.count(result.passed)
            await self._report(result)
            due = self._next_due(due + interval, loop.time())

    async def _report(self, result: CheckResult) -> None:
        try:
            await self._notifier.update(self.target, result)
        except Exception:  # a store hiccup must not end this instance's checks for good
            log.exception("recording the check of %s/%s failed", *self.target.key)

    def _next_due(self, due: float, now: float) -> float:
        if due >= now:
            return due
        # Behind by a whole interval: skip the missed rounds rather than burst them.
        self._limiter.skip()
        return now


class HttpCheck(PeriodicCheck):
    """GET the path; the status and a JSON body decide (see outcome.interpret_http)."""

    def __init__(
        self,
        target: Target,
        notifier: Notifier,
        limiter: Limiter,
        rng: random.Random,
        session: aiohttp.ClientSession,
    ) -> None:
        super().__init__(target, notifier, limiter, rng)
        self._session = session

    async def probe(self) -> CheckResult:
        # No redirects: "anything but 2xx fails", and a redirect to a login page that
        # answers 200 is a classic false pass.
        async with self._session.get(
            self.target.url, allow_redirects=False, headers=HEADERS
        ) as resp:
            return interpret_http(resp.status, await _read_capped(resp))


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The body up to MAX_BODY_BYTES, however many segments it arrives in."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY_BYTES:
        chunk = await resp.content.read(MAX_BODY_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class TcpCheck(PeriodicCheck):
    """A TCP connect within the timeout passes. A failure says only "failed": refused,
    reset or timed out would make the registry a port scanner for whoever registers."""

    async def run_once(self) -> CheckResult:
        result = await super().run_once()
        return result if result.passed else failure("TCP connect failed")

    async def probe(self) -> CheckResult:
        host = await _allowed_address(self.target.host, self.target.port, self.target.deny)
        _, writer = await asyncio.open_connection(host, self.target.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        host, port = self.target.host, self.target.port
        return CheckResult(passed=True, output=f"TCP connect {host}:{port}: ok")


async def _allowed_address(host: str, port: int, deny: Sequence[str]) -> str:
    """The first address of `host` outside --check-deny; OSError when there is none."""
    if not deny:
        return host
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        address = str(info[4][0])
        if denied(address, deny) is None:
            return address
    raise OSError(f"{host} resolves only to denied addresses (--check-deny)")


class DenyingResolver(AbstractResolver):
    """aiohttp's resolver minus the --check-deny addresses, for HTTP checks by name."""

    def __init__(self, deny: Sequence[str]) -> None:
        self._deny = tuple(deny)
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if denied(r["host"], self._deny) is None]
        if not allowed:
            raise OSError(f"{host} resolves only to denied addresses (--check-deny)")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
