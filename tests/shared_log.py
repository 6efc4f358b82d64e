"""A store several writers share, in memory: the part of etcd's contract the change path
relies on (one revision counter, per-key mod revisions, txn compares, a watch from a
revision), so the two-node semantics are tested before and beside a real etcd.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence

from jarvis_dns.errors import StaleRead
from jarvis_dns.models import Batch, Key, LivenessRow, Snapshot
from jarvis_dns.registry.apply import stamp
from jarvis_dns.registry.plan import Touch


class SharedLog:
    def __init__(self) -> None:
        self.revision = 0
        self.stale_reads = 0
        self._mods: dict[Key, int] = {}
        self._entries: list[tuple[int, Batch]] = []
        self._grown: asyncio.Event | None = None

    def commit(self, batch: Batch) -> int:
        for key, seen in batch.reads.items():
            if self._mods.get(key, 0) != seen:  # the txn compare
                self.stale_reads += 1
                raise StaleRead(f"{key} changed since it was read", self.revision)
        self.revision += 1
        stamp(batch, self.revision)
        for inst in batch.puts:
            self._mods[(inst.service_type, inst.key)] = self.revision
        for key in batch.deletes:
            self._mods.pop(key, None)
        # What a watcher decodes is its own copy, never the committer's objects.
        copy = dataclasses.replace(batch, puts=[dataclasses.replace(i) for i in batch.puts])
        self._entries.append((self.revision, copy))
        if self._grown is not None:
            self._grown.set()
            self._grown = None
        return self.revision

    async def watch(self, from_index: int) -> AsyncIterator[tuple[int, Batch]]:
        seen = from_index
        while True:
            for revision, batch in self._entries[seen:]:
                yield (
                    revision,
                    dataclasses.replace(batch, puts=[dataclasses.replace(i) for i in batch.puts]),
                )
                seen = revision
            if self._grown is None:
                self._grown = asyncio.Event()
            await self._grown.wait()


class SharedLogStore:
    """One node's handle on the shared log."""

    echoes = True

    def __init__(self, log: SharedLog) -> None:
        self.log = log
        self.flowing = asyncio.Event()  # clear it to hold this node's watch back
        self.flowing.set()

    async def load(self) -> Snapshot:
        return Snapshot()  # changes(0) replays the whole log

    async def commit(self, batch: Batch) -> int:
        return self.log.commit(batch)

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None:
        return None

    async def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]:
        async for revision, batch in self.log.watch(from_index):
            await self.flowing.wait()
            yield revision, batch

    async def latest_index(self) -> int:
        return self.log.revision

    def status(self) -> dict[str, object]:
        return {"backend": "test", "state": "ok"}

    async def close(self) -> None:
        return None
