"""A store that fails or stalls on command, around a real MemoryStore.

For the faults a real disk will not produce on cue: a commit that raises StoreError, or
one that hangs until the test lets it go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from jarvis_dns.errors import StoreError
from jarvis_dns.models import Batch, LivenessRow, Snapshot
from jarvis_dns.registry.plan import Touch
from jarvis_dns.store.memory import MemoryStore


class ScriptedStore:
    echoes = False

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.committed: list[Batch] = []
        self.fail = False
        self.gate: asyncio.Event | None = None  # set: commits wait for it
        self.waiting = 0

    def hold(self) -> asyncio.Event:
        """Stall every commit from now on until the returned event is set."""
        self.gate = asyncio.Event()
        return self.gate

    async def load(self) -> Snapshot:
        return await self.inner.load()

    async def commit(self, batch: Batch) -> int:
        if self.fail:
            raise StoreError("disk full")
        index = await self.inner.commit(batch)  # numbered at once, like the real ones
        gate = self.gate
        if gate is not None:
            self.waiting += 1
            try:
                await gate.wait()
            finally:
                self.waiting -= 1
        self.committed.append(batch)
        return index

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None:
        if self.fail:
            raise StoreError("disk full")
        await self.inner.write_liveness(rows)

    def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]:
        return self.inner.changes(from_index)

    async def latest_index(self) -> int:
        return await self.inner.latest_index()

    def status(self) -> dict[str, object]:
        return {"backend": "test", "state": "ok"}

    async def close(self) -> None:
        await self.inner.close()
