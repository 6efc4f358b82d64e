"""Exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# 2**64 is far past any cap; stopping there keeps the power from overflowing a float.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays that double from `base_s` up to `cap_s`, with equal jitter.

    Half of each delay is fixed and half random, so clients that lost the same server
    at the same moment do not all come back in lock-step, yet none retries at once.
    """

    base_s: float = 0.5
    cap_s: float = 10.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1:
            raise ValueError("backoff needs base_s >= 0, cap_s >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0 = the first retry)."""
        exponent = min(max(attempt, 0), _MAX_EXPONENT)
        ceiling = min(self.cap_s, self.base_s * self.factor**exponent)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)
