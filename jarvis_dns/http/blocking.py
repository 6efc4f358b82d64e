"""Blocking queries: wait until a change index passes N (Consul's ?index=&wait=)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

from jarvis_dns.errors import ServiceUnavailable, ValidationError
from jarvis_dns.metrics import Metrics
from jarvis_dns.models import Event
from jarvis_dns.registry.events import EventSource

# Consul caps waits at 10 minutes; proxies tend to cut idle connections soon after.
MAX_WAIT_S = 600.0
# Short enough that a waiter behind a proxy with a 60-90 s idle cut sees an answer, and
# that a forgotten watcher frees its slot (--max-waiting-queries) within a minute.
DEFAULT_WAIT_S = 60.0
# Blocking queries held at once (each costs about 13 KiB): past it, a 503.
DEFAULT_MAX_WAITING = 10_000
_WAIT = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
ALL = ""  # the key that wakes on any change


def parse_wait(raw: str | None) -> float:
    if raw is None or raw == "":
        return DEFAULT_WAIT_S
    match = _WAIT.match(raw.strip())
    if not match:
        raise ValidationError("must look like 30s, 500ms or 5m", field="wait")
    return min(float(match.group(1)) * _UNITS[match.group(2)], MAX_WAIT_S)


def parse_index(raw: str | None, field: str = "index") -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValidationError("must be an integer >= 0", field=field)
    return int(raw)


class IndexWaiter:
    """Wakes waiters on a service (or on anything) when the registry changes."""

    def __init__(
        self,
        source: EventSource,
        max_waiting: int = DEFAULT_MAX_WAITING,
        metrics: Metrics | None = None,
    ) -> None:
        self._signals: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}  # waiters per key: the last one out cleans up
        self._closed = False
        self.max_waiting = max_waiting
        self.waiting = 0  # queries waiting now, on any key
        source.subscribe(self._on_events)
        (metrics or Metrics()).gauge("jarvis_blocking_queries_waiting", lambda: self.waiting)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Answer every waiting query now: the server is shutting down."""
        self._closed = True
        for signal in self._signals.values():
            signal.set()
        self._signals.clear()

    def _on_events(self, events: Sequence[Event]) -> None:
        for key in {ALL, *(e.service_type for e in events)}:
            signal = self._signals.pop(key, None)
            if signal is not None:
                signal.set()

    async def wait(self, key: str, current: Callable[[], int], index: int, timeout: float) -> None:
        """Return once current() > index, or after timeout; never raises on timeout."""
        if index > current():
            return  # the server's index went backwards (fresh store): answer now, as Consul
        if self.waiting >= self.max_waiting:
            raise ServiceUnavailable(
                f"{self.max_waiting} blocking queries wait already; retry later",
                field="index",
                code="too_many_waiting",
            )
        self.waiting += 1
        try:
            await self._wait(key, current, index, timeout)
        finally:
            self.waiting -= 1

    async def _wait(self, key: str, current: Callable[[], int], index: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while current() <= index and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            signal = self._signals.setdefault(key, asyncio.Event())
            self._waiting[key] = self._waiting.get(key, 0) + 1
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return
            finally:
                self._leave(key)

    def _leave(self, key: str) -> None:
        left = self._waiting.pop(key) - 1
        if left:
            self._waiting[key] = left
        else:  # nobody waits on this key: keep no Event for names that never change
            self._signals.pop(key, None)

    def pending(self) -> int:
        """Keys with someone waiting (for tests and /v1/health)."""
        return len(self._signals)
