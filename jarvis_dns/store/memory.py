"""memory:// — keeps everything in dicts; for tests and throwaway runs."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence

from jarvis_dns.models import Batch, Event, Instance, Snapshot


class MemoryStore:
    def __init__(self, event_log_size: int = 10_000) -> None:
        self._instances: dict[tuple[str, str], Instance] = {}
        self._events: deque[Event] = deque(maxlen=event_log_size)
        self._services: dict[str, int] = {}
        self._index = 0

    def load(self) -> Snapshot:
        return Snapshot(
            instances=[copy.deepcopy(i) for i in self._instances.values()],
            events=list(self._events),
            index=self._index,
            service_indexes=dict(self._services),
        )

    def write(self, batch: Batch) -> None:
        for inst in batch.puts:
            self._instances[(inst.service_type, inst.key)] = copy.deepcopy(inst)
            self._services[inst.service_type] = batch.index
        for svc, key in batch.deletes:
            self._instances.pop((svc, key), None)
            self._services[svc] = batch.index
        self._events.extend(batch.events)
        self._index = max(self._index, batch.index)

    def write_liveness(self, instances: Sequence[Instance]) -> None:
        for inst in instances:
            kept = self._instances.get((inst.service_type, inst.key))
            if kept is not None:
                kept.last_heartbeat = inst.last_heartbeat
                kept.metrics = inst.metrics
                kept.check_output = inst.check_output

    def close(self) -> None:
        return None
