"""The view: every instance by type and by (type, id), and the change indexes (pure).

A projection of the store's log. Only ``apply`` (registry/apply.py) changes it; every
face reads it, through ``discovery`` where the question is "which instances answer".
"""

from __future__ import annotations

from collections.abc import Iterable

from jarvis_dns.errors import NotFound
from jarvis_dns.models import Instance, InstanceId, Key, Snapshot, Status, instance_key

BUSY = "busy"  # in a tally: live instances that report busy


class View:
    def __init__(self) -> None:
        self._services: dict[str, dict[str, Instance]] = {}
        # Kept after a service's last instance goes, so its index never moves back.
        self._service_index: dict[str, int] = {}
        # Instances per service by status (and live ones busy), kept by put/delete:
        # "does S answer at all?" in O(1) (DNS asks it after every change), and the counts
        # /v1/services and /metrics show, without walking a whole service.
        self._tally: dict[str, dict[str, int]] = {}
        self._count = 0
        self.index = 0

    def load(self, snapshot: Snapshot) -> None:
        """Take what a store kept; called once before serving."""
        self.index = max(self.index, snapshot.index)
        for inst in snapshot.instances:
            self.put(inst)
            self.advance(inst.service_type, inst.modify_index)
        for svc, idx in snapshot.service_indexes.items():
            self.advance(svc, idx)

    # -- reads -----------------------------------------------------------------

    def find(self, service_type: str, instance_id: InstanceId) -> Instance | None:
        group = self._services.get(service_type)
        return None if group is None else group.get(instance_key(instance_id))

    def get(self, service_type: str, instance_id: InstanceId) -> Instance:
        inst = self.find(service_type, instance_id)
        if inst is None:
            raise NotFound(f"no instance {service_type}/{instance_id}", field="instance_id")
        return inst

    def instances(self, service_type: str) -> list[Instance]:
        return list(self._services.get(service_type, {}).values())

    def all_instances(self) -> Iterable[Instance]:
        for group in self._services.values():
            yield from group.values()

    def service_types(self) -> list[str]:
        return sorted(svc for svc, group in self._services.items() if group)

    def service_index(self, service_type: str) -> int:
        return self._service_index.get(service_type, 0)

    def size(self, service_type: str) -> int:
        """Instances of one service, in any state."""
        return len(self._services.get(service_type, ()))

    def count(self) -> int:
        return self._count  # O(1): --max-instances asks on every registration

    def live_count(self, service_type: str) -> int:
        tally = self._tally.get(service_type)
        return 0 if tally is None else tally[Status.ACTIVE.value]

    def tally(self, service_type: str) -> dict[str, int]:
        """{active, dead, maintenance, busy (live and busy), total} of one service."""
        tally = self._tally.get(service_type) or _empty_tally()
        return {**tally, "total": self.size(service_type)}

    def modify_index(self, key: Key) -> int:
        """What a plan read of this key (0: absent), for optimistic commits."""
        inst = self.find(*key)
        return 0 if inst is None else inst.modify_index

    # -- changed only by apply -------------------------------------------------

    def put(self, inst: Instance) -> None:
        group = self._services.setdefault(inst.service_type, {})
        old = group.get(inst.key)
        self._count += old is None
        self._add_tally(old, -1)
        group[inst.key] = inst
        self._add_tally(inst, +1)

    def delete(self, key: Key) -> None:
        group = self._services.get(key[0])
        if group is None:
            return
        old = group.pop(key[1], None)
        self._count -= old is not None
        self._add_tally(old, -1)
        if not group:
            del self._services[key[0]]
            self._tally.pop(key[0], None)

    def _add_tally(self, inst: Instance | None, delta: int) -> None:
        if inst is None:
            return
        tally = self._tally.get(inst.service_type)
        if tally is None:
            tally = self._tally[inst.service_type] = _empty_tally()
        tally[inst.status.value] += delta
        if inst.busy and inst.live:
            tally[BUSY] += delta

    def advance(self, service_type: str, index: int) -> None:
        self.index = max(self.index, index)
        self._service_index[service_type] = max(self.service_index(service_type), index)


def _empty_tally() -> dict[str, int]:
    return {**{status.value: 0 for status in Status}, BUSY: 0}
