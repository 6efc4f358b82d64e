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
* ``changes(from_index)``: (index, batch) committed after from_index, in index order,
  for ``apply`` (and (0, Touch) for another node's liveness: heartbeat times, metrics);
  empty for a single node (memory, SQLite), the etcd watch for a cluster.
  A shared store whose watch cannot resume (the revision it had was compacted away)
  loads everything again and yields it as one ``Reload`` (a Batch; see below).
* ``await close()``: finish what is queued, then release everything.
* ``status()``: the backend and its state for ``/v1/health``.
* ``await latest_index()``: the newest batch anyone committed: a node of a cluster
  catches up to it before it tells a client that an instance does not exist (a client
  that registered on one node and beats another right after must not get a 404).
* ``echoes``: False for a store only this node writes (memory, SQLite): the writer
  applies its own batches as their commits return, in index order. True for a shared
  store (etcd): every batch, this node's own included, comes back through
  ``changes()``, and the writer waits for its view to reach the committed index, so
  local and remote changes are applied by one loop in revision order.
* A shared store commits a batch only if the keys its plan read still have the
  ``modify_index`` recorded in ``batch.reads``; otherwise it raises StaleRead (with the
  store's revision) and the writer plans again once its view has caught up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from jarvis_dns.models import Batch, LivenessRow, Snapshot
from jarvis_dns.registry.plan import Touch


@dataclass(slots=True)
class Reload(Batch):
    """What changes() yields when its watch could not resume and it loaded everything
    again: the whole store at ``snapshot``, as one batch that brings a view fed by this
    store to that state.

    As a Batch: ``puts`` every instance, ``deletes`` the keys this store had handed out
    that are gone, ``events`` those newer than the last revision handed out; it comes
    stamped (``index`` is the snapshot's), so ``apply`` keeps every instance's and
    event's own index. A writer that knows Reload may instead rebuild its view from
    ``snapshot`` and tell every subscriber that everything changed.
    """

    snapshot: Snapshot = field(default_factory=Snapshot)


class Store(Protocol):
    echoes: bool

    async def load(self) -> Snapshot: ...

    def commit(self, batch: Batch) -> Awaitable[int]:
        """A coroutine, or a future the store settles itself (no task to await it)."""
        ...

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None: ...

    def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]: ...

    async def close(self) -> None: ...

    async def latest_index(self) -> int:
        """The newest committed batch's index, whoever committed it."""
        ...

    def status(self) -> dict[str, object]:
        """For /v1/health: {"backend", "state": "ok" | "unavailable", ...}."""
        ...


async def no_changes(from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]:
    """The changes() of a store no other node writes to."""
    return
    yield  # an async generator that ends at once
