"""Long in-memory work cut into turns of the event loop.

Everything (HTTP, DNS, the health monitor) shares one loop: a step that walks tens of
thousands of items in one go holds every request for as long (a liveness flush of
50,000 beaten instances held DNS for about 80 ms). ``in_turns`` hands such a sequence
over a slice at a time and lets the loop serve what waits between slices.
"""

from __future__ import annotations

import asyncio
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
    """Callbacks run in arrival order, at most ``per_turn`` of them in one turn of the
    loop.

    The loop runs everything its sockets hand in at once before it polls them again:
    64 connections' requests, ready in one poll, would be answered in one go (about
    15 ms on a slow VM) while a DNS query that came meanwhile waits. A rota lets the
    loop poll between every few."""

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
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
        waiting = self._waiting
        try:
            for _ in range(min(self.per_turn, len(waiting))):
                waiting.popleft()()
        finally:  # one that raised (the loop logs it) stops none of the rest
            self._call()
