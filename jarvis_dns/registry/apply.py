"""apply(view, index, batch) -> events: the only code that changes the view (pure).

The same function runs for a node's own commits and for batches other nodes committed
(arriving from ``store.changes``), so every node that applies the same log holds the
same view and tells the same events.
"""

from __future__ import annotations

from jarvis_dns.models import Batch, Event, Instance
from jarvis_dns.registry.plan import Touch
from jarvis_dns.registry.view import View


def stamp(batch: Batch, index: int) -> None:
    """Give the batch its change index: its new instances and its events carry it."""
    if batch.index == index:
        return
    batch.index = index
    for inst in batch.puts:
        inst.encoded = None
        inst.modify_index = index
        if not inst.create_index:
            inst.create_index = index
    for event in batch.events:  # the batch's own drafts, in no log yet
        event.index = index


def apply(view: View, index: int, batch: Batch) -> list[Event]:
    stamp(batch, index)
    for inst in batch.puts:
        view.put(inst)
        view.advance(inst.service_type, index)
    for key in batch.deletes:
        view.delete(key)
        view.advance(key[0], index)
    view.index = max(view.index, index)
    return batch.events


def touch(view: View, change: Touch) -> Instance | None:
    """Liveness only: the instance's heartbeat time, metrics or check output."""
    inst = view.find(*change.key)
    if inst is None:
        return None
    inst.encoded = None
    if change.last_heartbeat is not None:
        inst.last_heartbeat = change.last_heartbeat
    if change.metrics is not None:
        inst.metrics = change.metrics
    if change.check_output is not None:
        inst.check_output = change.check_output
    return inst
