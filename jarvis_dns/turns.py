"""Long in-memory work cut into turns of the event loop.

Everything (HTTP, DNS, the health monitor) shares one loop: a step that walks tens of
thousands of items in one go holds every request for as long (a liveness flush of
50,000 beaten instances held DNS for about 80 ms). ``in_turns`` hands such a sequence
over a slice at a time and lets the loop serve what waits between slices; a ``Rota``
runs many small pieces of work that arrive together (requests from many connections)
for a time budget a turn.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def in_turns(items: Sequence[T], size: int) -> AsyncIterator[Sequence[T]]:
    """items, size at a time; the loop takes a turn before every slice but the first."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]


class Rota:
    """Callbacks run in arrival order, for about ``budget_s`` in one turn of the loop
    (at least one a turn).

    The loop runs everything its sockets hand in at once before it polls them again:
    64 connections' requests, ready in one poll, would be answered in one go (about
    15 ms on a slow VM) while a DNS query that came meanwhile waits. A rota lets the
    loop poll between short stretches of them. A budget in time, not in callbacks,
    keeps their share of the loop when other work takes turns beside them (a liveness
    flush of tens of thousands of rows)."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s = budget_s
        self._clock = clock
        self._waiting: deque[Callable[[], None]] = deque()
        self._due = False

    def add(self, work: Callable[[], None]) -> None:
        self._waiting.append(work)
        self._call()

    def _call(self) -> None:
        if not self._due and self._waiting:
            self._due = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self._due = False
        waiting, clock = self._waiting, self._clock
        # What is added meanwhile waits for the next turn, as call_soon's callbacks do.
        left = len(waiting)
        ends = clock() + self.budget_s
        try:
            while left:
                left -= 1
                waiting.popleft()()
                if clock() >= ends:
                    break
        finally:  # one that raised (the loop logs it) stops none of the rest
            self._call()
