"""The liveness buffer: heartbeat times, metrics and check output waiting to be flushed.

Beats that change nothing else do not bump the change index (as Consul's TTL checks):
the view is updated at once and the instance is noted here; the flusher drains copies
of those fields once a flush interval (never the live objects, which keep changing).
"""

from __future__ import annotations

from collections.abc import Iterable

from jarvis_dns.models import Instance, Key, LivenessRow
from jarvis_dns.registry.view import View


def row_of(inst: Instance) -> LivenessRow:
    # metrics dicts are replaced whole, never changed in place: sharing one is a copy.
    return LivenessRow(
        inst.service_type,
        inst.key,
        inst.last_heartbeat,
        inst.metrics,
        inst.check_output,
        inst.modify_index,
    )


class LivenessBuffer:
    def __init__(self) -> None:
        self._dirty: dict[Key, Instance] = {}

    def note(self, inst: Instance) -> None:
        self._dirty[(inst.service_type, inst.key)] = inst

    def forget(self, key: Key) -> None:
        """A full write carries the liveness fields too: nothing left to flush."""
        self._dirty.pop(key, None)

    def take(self) -> list[Instance]:
        """The noted instances, the buffer empty again: the caller copies their fields
        (row_of) when it writes them, and a beat meanwhile is noted anew."""
        noted = list(self._dirty.values())
        self._dirty.clear()
        return noted

    def drain(self) -> list[LivenessRow]:
        return [row_of(inst) for inst in self.take()]

    def put_back(self, rows: Iterable[LivenessRow], view: View) -> None:
        """Liveness a failed flush could not write, unless since replaced or removed."""
        for row in rows:
            inst = view.find(row.service_type, row.key)
            if inst is not None and inst.modify_index == row.modify_index:
                self._dirty.setdefault((row.service_type, row.key), inst)

    def __len__(self) -> int:
        return len(self._dirty)
