"""A circuit breaker per registry server URL."""

from __future__ import annotations

import time

from jarvis_dns.client._types import Clock


class CircuitBreaker:
    """Stops sending to a server after `threshold` failures in a row.

    While open, one trial request goes through per `reset_s` window (half-open); its
    success closes the breaker, its failure keeps it open for another window. There is
    no separate half-open state to get stuck in when a trial request is cancelled.
    """

    def __init__(self, threshold: int = 3, reset_s: float = 5.0, clock: Clock = time.monotonic):
        if threshold < 1 or reset_s < 0:
            raise ValueError("breaker needs threshold >= 1 and reset_s >= 0")
        self._threshold = threshold
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._retry_at = 0.0

    @property
    def is_open(self) -> bool:
        """True while requests are being refused (no side effect, unlike allow())."""
        return self._failures >= self._threshold and self._clock() < self._retry_at

    def allow(self) -> bool:
        """May a request go to this server now? Spends the window's trial when open."""
        if self._failures < self._threshold:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._reset_s
        return True

    def success(self) -> None:
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._retry_at = self._clock() + self._reset_s
