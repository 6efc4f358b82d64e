"""Self-preservation: never mass-expire a fleet because of the registry's own trouble (pure).

Eureka's lesson: when most heartbeats stop at once, the likelier cause is the network
between the fleet and the registry (or the registry itself stalling), not every
instance dying together. So if, within one TTL window, more than `threshold` of the
live instances would expire, TTL expiry is held: the instances stay answered and wait
here. The hold releases by itself once enough of them heartbeat again (what is left is
then an ordinary minority and expires), or when an operator clears it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

log = logging.getLogger("jarvis_dns.health")
K = TypeVar("K", bound=Hashable)

# Below ten live instances one or two ordinary crashes already cross any sensible
# threshold; holding them would keep dead instances in answers and a small fleet could
# never shrink (Eureka's best-known trap). Mass expiry of a handful is believable.
MIN_FLEET = 10
# While holding, repeat the warning this often so it is not lost in the log.
REMIND_EVERY_S = 300.0


class SelfPreservation(Generic[K]):
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.held: dict[K, float] = {}  # key -> its ttl_s, in the order it became due
        self.active = False
        self.since: float | None = None
        self.reason = ""
        self._recent: deque[float] = deque()  # times of recent TTL expiries
        self._window_s = 0.0
        self._reminded = 0.0

    def discard(self, key: K) -> None:
        """The instance heartbeat, changed or left: it no longer waits to expire."""
        self.held.pop(key, None)

    def admit(self, now: float, due: Iterable[tuple[K, float]], others_live: int) -> list[K]:
        """Take newly due (key, ttl_s) pairs; return the keys to expire now.

        `others_live` counts live instances that are neither due nor held.
        """
        for key, ttl in due:
            self.held[key] = ttl
            self._window_s = max(self._window_s, ttl)
        if not self.held:
            if self.active:
                self._release(now, "heartbeats recovered")
            return []
        recent = self._recent_count(now)
        live = others_live + len(self.held) + recent
        share = (len(self.held) + recent) / live
        if self.threshold > 0 and live >= MIN_FLEET and share > self.threshold:
            self._hold(now, len(self.held) + recent, live, share)
            return []
        if self.active:
            self._release(now, "heartbeats recovered")
        return self._expire_all(now)

    def clear(self, now: float) -> list[K]:
        """The operator's override: expire what is held and start counting afresh."""
        if self.active:
            self._release(now, "cleared by operator")
        expired = list(self.held)
        self.held.clear()
        self._recent.clear()  # or the cleared mass would re-trigger the hold at once
        self._window_s = 0.0
        return expired

    def status(self) -> dict[str, object]:
        return {
            "active": self.active,
            "since": self.since,
            "reason": self.reason,
            "held": len(self.held),
            "threshold": self.threshold,
        }

    def _recent_count(self, now: float) -> int:
        while self._recent and self._recent[0] <= now - self._window_s:
            self._recent.popleft()
        return len(self._recent)

    def _expire_all(self, now: float) -> list[K]:
        expired = list(self.held)
        self.held.clear()
        self._recent.extend(now for _ in expired)
        if not self._recent:
            self._window_s = 0.0
        return expired

    def _hold(self, now: float, expiring: int, live: int, share: float) -> None:
        self.reason = (
            f"{expiring} of {live} live instances ({share:.0%}) stopped heartbeating within "
            f"{self._window_s:g}s; threshold {self.threshold:.0%}"
        )
        if not self.active:
            self.active, self.since, self._reminded = True, now, now
            log.warning(
                "SELF-PRESERVATION ENGAGED: %s. TTL expiry is held and these instances stay "
                "in answers; suspect the network or the registry, not the fleet. It releases "
                "when heartbeats recover, or clear it: DELETE /v1/health/self-preservation",
                self.reason,
            )
        elif now - self._reminded >= REMIND_EVERY_S:
            self._reminded = now
            log.warning("SELF-PRESERVATION STILL HOLDING since %.0f: %s", self.since, self.reason)

    def _release(self, now: float, why: str) -> None:
        log.warning(
            "self-preservation released (%s) after %.0fs; %d held instances expire now",
            why,
            now - (self.since or now),
            len(self.held),
        )
        self.active, self.since, self.reason = False, None, ""
