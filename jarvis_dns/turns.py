"""Long in-memory work cut into turns of the event loop.

Everything (HTTP, DNS, the health monitor) shares one loop: a step that walks tens of
thousands of items in one go holds every request for as long (a liveness flush of
50,000 beaten instances held DNS for about 80 ms). ``in_turns`` hands such a sequence
over a slice at a time and lets the loop serve what waits between slices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

T = TypeVar("T")


async def in_turns(items: Sequence[T], size: int) -> AsyncIterator[Sequence[T]]:
    """items, size at a time; the loop takes a turn before every slice but the first."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]
