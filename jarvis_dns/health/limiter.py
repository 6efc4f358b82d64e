"""The global bound on probes in flight; what the probes count goes to metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from jarvis_dns.metrics import Metrics

# Enough recent samples for a stable p99 (100 beyond it), little memory.
LAG_SAMPLES = 10_000
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


class Limiter:
    def __init__(self, limit: int, metrics: Metrics | None = None) -> None:
        metrics = metrics or Metrics()
        self._sem = asyncio.Semaphore(max(1, limit))
        self.limit = max(1, limit)
        self.in_flight = 0
        self.checks = metrics.counter("jarvis_checks_total")
        self.checks.start(PASSED, FAILED, SKIPPED)
        self.lag = metrics.histogram("jarvis_check_lag_seconds", recent=LAG_SAMPLES)
        metrics.gauge("jarvis_checks_in_flight", lambda: self.in_flight)

    @contextlib.asynccontextmanager
    async def slot(self, lag: float) -> AsyncIterator[None]:
        """Hold one of `limit` slots; `lag` is how late the probe was when it was due."""
        loop = asyncio.get_running_loop()
        waited_from = loop.time()
        async with self._sem:
            # The schedule lag includes the wait for a free slot.
            self.lag.observe(max(0.0, lag + loop.time() - waited_from))
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1

    def count(self, passed: bool) -> None:
        self.checks.inc(PASSED if passed else FAILED)

    def skip(self) -> None:
        """A round skipped: the checker was a whole interval behind."""
        self.checks.inc(SKIPPED)

    def lag_quantile(self, q: float) -> float | None:
        return self.lag.quantile(q)

    def status(self) -> dict[str, object]:
        """Counters since start; lag quantiles over the last LAG_SAMPLES probes."""
        passed, failed = int(self.checks.get(PASSED)), int(self.checks.get(FAILED))
        return {
            "checks_in_flight": self.in_flight,
            "checks_in_flight_limit": self.limit,
            "checks_total": passed + failed,
            "checks_failed": failed,
            "checks_skipped": int(self.checks.get(SKIPPED)),
            "check_lag_p50_s": _rounded(self.lag_quantile(0.5)),
            "check_lag_p99_s": _rounded(self.lag_quantile(0.99)),
            "check_lag_max_s": _rounded(self.lag_quantile(1.0)),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
