"""A hashed timer wheel: deadlines in fixed-width buckets (pure).

Moving a deadline (what every heartbeat does) is O(1), and popping what is due costs
only the buckets passed and the keys in them, so the monitor's per-tick cost follows
the number of instances that actually expire, never the number that stay healthy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerWheel(Generic[K]):
    def __init__(self, resolution_s: float) -> None:
        self._resolution = resolution_s
        self._slot_of: dict[K, int] = {}
        # A dict as an ordered set: keys come out in the order they were scheduled.
        self._slots: dict[int, dict[K, None]] = {}
        self._cursor: int | None = None  # first slot not yet popped

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: object) -> bool:
        return key in self._slot_of

    def schedule(self, key: K, deadline: float) -> None:
        """Put (or move) `key` so it pops at the first tick at or after `deadline`."""
        slot = math.ceil(deadline / self._resolution)
        if self._cursor is not None:
            slot = max(slot, self._cursor)  # a past deadline pops on the next tick
        if self._slot_of.get(key) == slot:
            return
        self.cancel(key)
        self._slot_of[key] = slot
        self._slots.setdefault(slot, {})[key] = None

    def cancel(self, key: K) -> None:
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return
        bucket = self._slots[slot]
        del bucket[key]
        if not bucket:
            del self._slots[slot]

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is <= now."""
        last = math.floor(now / self._resolution)
        due: list[K] = []
        for slot in self._due_slots(last):
            bucket = self._slots.pop(slot, None)
            if bucket:
                due.extend(bucket)
        for key in due:
            del self._slot_of[key]
        self._cursor = last + 1 if self._cursor is None else max(self._cursor, last + 1)
        return due

    def _due_slots(self, last: int) -> list[int]:
        # Walking slot by slot is O(1) per tick; after a long pause (or a test that jumps
        # the clock) scanning the occupied slots is cheaper than walking every empty one.
        if self._cursor is not None and last - self._cursor < len(self._slots):
            return list(range(self._cursor, last + 1))
        return sorted(s for s in self._slots if s <= last)
