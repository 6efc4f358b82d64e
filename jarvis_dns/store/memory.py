"""memory:// — keeps everything in dicts; for tests and throwaway runs."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Sequence

from jarvis_dns.models import Batch, Event, Instance, Key, LivenessRow, Snapshot
from jarvis_dns.registry.apply import stamp
from jarvis_dns.registry.plan import Touch
from jarvis_dns.store.base import no_changes


class MemoryStore:
    echoes = False  # only this process writes it: Changes applies its own commits

    def __init__(self, event_log_size: int = 10_000) -> None:
        self._instances: dict[Key, Instance] = {}
        self._events: deque[Event] = deque(maxlen=event_log_size)
        self._services: dict[str, int] = {}
        self._index = 0

    async def load(self) -> Snapshot:
        return Snapshot(
            instances=[dataclasses.replace(i) for i in self._instances.values()],
            events=list(self._events),
            index=self._index,
            service_indexes=dict(self._services),
        )

    async def commit(self, batch: Batch) -> int:
        self._index += 1
        stamp(batch, self._index)
        for inst in batch.puts:
            # A copy: the view's object keeps taking heartbeats in place.
            self._instances[(inst.service_type, inst.key)] = dataclasses.replace(inst)
        for key in batch.deletes:
            self._instances.pop(key, None)
        for svc in batch.services():
            self._services[svc] = self._index
        self._events.extend(batch.events)
        return self._index

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None:
        for row in rows:
            kept = self._instances.get((row.service_type, row.key))
            if kept is not None and kept.modify_index == row.modify_index:
                kept.last_heartbeat = row.last_heartbeat
                kept.metrics = row.metrics
                kept.check_output = row.check_output

    def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]:
        return no_changes(from_index)

    async def close(self) -> None:
        return None

    async def latest_index(self) -> int:
        return self._index

    def status(self) -> dict[str, object]:
        return {"backend": "memory", "state": "ok"}
