"""plan(view, command, now) -> what to commit (pure).

Validates against the current view and raises the same 4xx errors the faces answer
with (NotFound), and never changes the view: a plan is only a proposal until the store
has committed it and ``apply`` has run. The answer is one of

* a ``Batch``: new Instance objects and event drafts, durable or liveness-class;
* a ``Touch``: liveness only (heartbeat time, metrics, check output), no index bump;
* ``None``: nothing to do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jarvis_dns.models import (
    Batch,
    Event,
    EventKind,
    Instance,
    InstanceSpec,
    JSONObject,
    Key,
    Status,
    cap_output,
)
from jarvis_dns.registry.commands import (
    Command,
    Deregister,
    Expire,
    Heartbeat,
    Observe,
    Register,
    Remove,
    SetStatus,
)
from jarvis_dns.registry.view import View

# What a registration may change; a repeat with all of them equal is only a heartbeat.
_SPEC_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(InstanceSpec)
    if f.name not in ("service_type", "instance_id")
)


@dataclass(frozen=True, slots=True)
class Touch:
    """Liveness only: applied to the view at once and flushed in batches."""

    key: Key
    last_heartbeat: float | None = None
    metrics: JSONObject | None = None
    check_output: str | None = None


Plan = Batch | Touch | None
_Change = tuple[EventKind, Status | None, str]


def plan(view: View, command: Command, now: float) -> Plan:
    planner: Callable[[View, Any, float], Plan] = _PLANNERS[type(command)]
    return planner(view, command, now)


def _register(view: View, cmd: Register, now: float) -> Plan:
    spec = cmd.spec
    old = view.find(spec.service_type, spec.instance_id)
    if old is not None and _same_spec(old, spec):
        return Touch(cmd.key, last_heartbeat=now)  # a repeated registration is a heartbeat
    new = _new_instance(spec, old, now)
    kind = EventKind.UPDATED if old else EventKind.REGISTERED
    reason = "re-registered" if old else "registered"
    return _batch(view, new, [(kind, old.status if old else None, reason)], now)


def _new_instance(spec: InstanceSpec, old: Instance | None, now: float) -> Instance:
    changed_status = old is None or old.status is not spec.status
    return Instance(
        service_type=spec.service_type,
        instance_id=spec.instance_id,
        host=spec.host,
        port=spec.port,
        metadata=spec.metadata,
        weight=spec.weight,
        busy=spec.busy,
        status=spec.status,
        ttl_s=spec.ttl_s,
        check=spec.check,
        deregister_after_s=spec.deregister_after_s,
        registered_at=old.registered_at if old else now,
        last_heartbeat=now,
        status_since=now if changed_status or old is None else old.status_since,
        metrics=old.metrics if old else {},
        check_output=old.check_output if old else "",
        check_failing=old.check_failing if old else False,
        create_index=old.create_index if old else 0,
    )


def _heartbeat(view: View, cmd: Heartbeat, now: float) -> Plan:
    inst = view.get(cmd.service_type, cmd.instance_id)
    # A heartbeat revives a dead instance unless its active check still fails.
    resumed = inst.status is Status.DEAD and not inst.check_failing
    flip = cmd.busy is not None and cmd.busy != inst.busy
    if not resumed and not flip:  # the hot path: liveness only
        return Touch(cmd.key, last_heartbeat=now, metrics=cmd.metrics)
    new = inst.revised()
    new.last_heartbeat = now
    if cmd.metrics is not None:
        new.metrics = cmd.metrics
    changes: list[_Change] = []
    if resumed:
        new.status, new.status_since = Status.ACTIVE, now
        changes.append((EventKind.HEARTBEAT_RESUMED, inst.status, "heartbeat resumed"))
    if flip:
        new.busy = bool(cmd.busy)
        changes.append(_busy_change(new.busy, inst.status, "heartbeat"))
    return _batch(view, new, changes, now, durable=resumed)


def _set_status(view: View, cmd: SetStatus, now: float) -> Plan:
    inst = view.get(cmd.service_type, cmd.instance_id)
    new = inst.revised()
    changes: list[_Change] = []
    durable = False
    if cmd.status is not None and cmd.status is not inst.status:
        _move_status(new, cmd.status, now)
        changes.append((_STATUS_KIND[cmd.status], inst.status, cmd.reason))
        durable = True
    if cmd.busy is not None and cmd.busy != inst.busy:
        new.busy = cmd.busy
        changes.append(_busy_change(cmd.busy, inst.status, cmd.reason))
    return _batch(view, new, changes, now, durable=durable) if changes else None


def _observe(view: View, cmd: Observe, now: float) -> Plan:
    inst = view.get(cmd.service_type, cmd.instance_id)
    output = cap_output(cmd.output)
    new = inst.revised()
    new.check_output, new.check_failing = output, cmd.failing
    if cmd.metrics is not None:
        new.metrics = cmd.metrics
    changes: list[_Change] = []
    crossed = cmd.failing != inst.check_failing  # the failure threshold, either way
    durable = crossed
    if cmd.status is not None and cmd.status is not inst.status:
        _move_status(new, cmd.status, now)
        changes.append((cmd.kind, inst.status, cmd.reason))
        durable = True
    elif crossed:  # already dead (or kept by TTL): the crossing is still an event
        changes.append((cmd.kind, inst.status, cmd.reason))
    if cmd.busy is not None and cmd.busy != inst.busy:
        new.busy = cmd.busy
        changes.append(_busy_change(cmd.busy, inst.status, cmd.reason))
    if changes:
        return _batch(view, new, changes, now, durable=durable)
    return Touch(cmd.key, metrics=cmd.metrics, check_output=output)


def _expire(view: View, cmd: Expire, now: float) -> Plan:
    inst = view.find(cmd.service_type, cmd.instance_id)
    if inst is None or inst.status is not Status.ACTIVE:
        return None
    if inst.last_heartbeat > cmd.seen_heartbeat:
        return None  # it beat while the expiry was on its way
    new = inst.revised()
    _move_status(new, Status.DEAD, now)
    return _batch(view, new, [(EventKind.TTL_EXPIRED, inst.status, "ttl expired")], now)


def _remove(view: View, cmd: Remove, now: float) -> Plan:
    inst = view.find(cmd.service_type, cmd.instance_id)
    if inst is None or inst.status is not Status.DEAD:
        return None
    return _deletion(view, inst, EventKind.REMOVED, cmd.reason, now)


def _deregister(view: View, cmd: Deregister, now: float) -> Plan:
    inst = view.get(cmd.service_type, cmd.instance_id)
    return _deletion(view, inst, EventKind.DEREGISTERED, cmd.reason, now)


def _deletion(view: View, inst: Instance, kind: EventKind, reason: str, now: float) -> Batch:
    key = (inst.service_type, inst.key)
    event = _draft(inst, kind, inst.status, None, reason, now)
    return Batch(deletes=[key], events=[event], reads={key: inst.modify_index})


# -- shared pieces ---------------------------------------------------------------


def _batch(
    view: View, new: Instance, changes: list[_Change], now: float, durable: bool = True
) -> Batch:
    key = (new.service_type, new.key)
    events = [_draft(new, kind, old, new.status, reason, now) for kind, old, reason in changes]
    return Batch(puts=[new], events=events, durable=durable, reads={key: view.modify_index(key)})


def _draft(
    inst: Instance,
    kind: EventKind,
    old: Status | None,
    new: Status | None,
    reason: str,
    now: float,
) -> Event:
    return Event(0, now, kind, inst.service_type, inst.instance_id, old, new, reason)


def _move_status(inst: Instance, status: Status, now: float) -> None:
    inst.status, inst.status_since = status, now
    if status is Status.ACTIVE:
        inst.last_heartbeat = now  # a fresh TTL, or it would expire at once


_STATUS_KIND = {
    Status.ACTIVE: EventKind.ACTIVE,
    Status.DEAD: EventKind.DEAD,
    Status.MAINTENANCE: EventKind.MAINTENANCE,
}


def _busy_change(busy: bool, status: Status, reason: str) -> _Change:
    return (EventKind.BUSY if busy else EventKind.IDLE, status, reason)


def _same_spec(inst: Instance, spec: InstanceSpec) -> bool:
    return all(getattr(inst, f) == getattr(spec, f) for f in _SPEC_FIELDS)


_PLANNERS: dict[type, Callable[[View, Any, float], Plan]] = {
    Register: _register,
    Heartbeat: _heartbeat,
    SetStatus: _set_status,
    Observe: _observe,
    Expire: _expire,
    Remove: _remove,
    Deregister: _deregister,
}
