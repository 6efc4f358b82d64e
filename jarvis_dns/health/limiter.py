"""The global bound on probes in flight, and the counters the status report shows."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

# Enough recent samples for a stable p99 (100 beyond it), little memory.
LAG_SAMPLES = 10_000


class Limiter:
    def __init__(self, limit: int) -> None:
        self._sem = asyncio.Semaphore(max(1, limit))
        self.limit = max(1, limit)
        self.in_flight = 0
        self.total = 0
        self.failed = 0
        self.skipped = 0
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)

    @contextlib.asynccontextmanager
    async def slot(self, lag: float) -> AsyncIterator[None]:
        """Hold one of `limit` slots; `lag` is how late the probe was when it was due."""
        loop = asyncio.get_running_loop()
        waited_from = loop.time()
        async with self._sem:
            # The schedule lag includes the wait for a free slot.
            self.lags.append(max(0.0, lag + loop.time() - waited_from))
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1

    def count(self, passed: bool) -> None:
        self.total += 1
        self.failed += not passed

    def lag_quantile(self, q: float) -> float | None:
        if not self.lags:
            return None
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    def status(self) -> dict[str, object]:
        """Counters since start; lag quantiles over the last LAG_SAMPLES probes."""
        return {
            "checks_in_flight": self.in_flight,
            "checks_in_flight_limit": self.limit,
            "checks_total": self.total,
            "checks_failed": self.failed,
            "checks_skipped": self.skipped,
            "check_lag_p50_s": _rounded(self.lag_quantile(0.5)),
            "check_lag_p99_s": _rounded(self.lag_quantile(0.99)),
            "check_lag_max_s": _rounded(self.lag_quantile(1.0)),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
