"""The one storage Protocol every backend implements (async).

In DESIGN's words: the store is the log; the view is its projection.

* ``await load()`` -> Snapshot: every instance, the event log tail and the change index.
* ``await commit(batch)`` -> index: the store numbers the batch (a sequence in memory
  and SQLite; the revision in etcd) and stamps it. Indexes grow in the order commit()
  is called. A durable batch is on disk when the call returns; a liveness-class batch
  (busy flips) may return first and be written with the next group. A failed commit
  raises StoreError and leaves nothing half-written.
* ``await write_liveness(rows)``: heartbeat times, metrics and check output, batched;
  a row applies only while the stored record has the row's modify_index (a newer full
  write wins).
* ``changes(from_index)``: batches committed by anyone else, in index order, for
  ``apply``; empty for a single node (memory, SQLite), the etcd watch for a cluster.
* ``await close()``: finish what is queued, then release everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from jarvis_dns.models import Batch, LivenessRow, Snapshot


class Store(Protocol):
    async def load(self) -> Snapshot: ...

    async def commit(self, batch: Batch) -> int: ...

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None: ...

    def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch]]: ...

    async def close(self) -> None: ...


async def no_changes(from_index: int) -> AsyncIterator[tuple[int, Batch]]:
    """The changes() of a store no other node writes to."""
    return
    yield  # an async generator that ends at once
