"""The Registry: the one in-memory view every face answers from (pure, clock injected).

Every command validates against the current view, writes its batch to the journal
(the store) first and only then changes the view, bumps the change index and tells
subscribers. A journal failure therefore leaves the view untouched.

Heartbeats that change nothing but the liveness timestamp do not bump the index (as
Consul's TTL checks): they are collected as "dirty liveness" and flushed in batches.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from jarvis_dns.errors import NotFound
from jarvis_dns.matching import Predicate, Selector
from jarvis_dns.models import (
    Batch,
    Event,
    EventKind,
    Instance,
    InstanceId,
    InstanceSpec,
    JSONObject,
    Snapshot,
    Status,
    instance_key,
)

log = logging.getLogger("jarvis_dns.registry")
Clock = Callable[[], float]
Subscriber = Callable[[Sequence[Event]], None]
HeartbeatListener = Callable[[Instance], None]
ResumeGuard = Callable[[Instance], bool]
DEFAULT_EVENT_LOG_SIZE = 10_000
MAX_CHECK_OUTPUT = 4096
MATCH_CACHE_SIZE = 4096  # distinct (service, requirements) pairs kept; then start over


class Journal(Protocol):
    """The durable side of a change; store backends implement it."""

    def write(self, batch: Batch) -> None: ...


class _NullJournal:
    def write(self, batch: Batch) -> None:
        return None


_SPEC_FIELDS = ("host", "port", "metadata", "weight", "busy", "status", "ttl_s", "check")


class Registry:
    def __init__(
        self,
        clock: Clock,
        journal: Journal | None = None,
        event_log_size: int = DEFAULT_EVENT_LOG_SIZE,
        selector: Selector | None = None,
    ) -> None:
        self._clock = clock
        self._journal: Journal = journal or _NullJournal()
        self._services: dict[str, dict[str, Instance]] = {}
        # Kept after a service's last instance goes, so its index never moves back.
        self._service_index: dict[str, int] = {}
        self._events: deque[Event] = deque(maxlen=event_log_size)
        self._subscribers: list[Subscriber] = []
        self._heartbeat_listeners: list[HeartbeatListener] = []
        self._may_resume: ResumeGuard = lambda inst: True
        self._dirty: dict[tuple[str, str], Instance] = {}
        self._match_cache: dict[tuple[str, str], tuple[int, list[Instance]]] = {}
        self.selector = selector or Selector()
        self.index = 0

    # -- loading ---------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Load what a store kept; called once before serving."""
        self.index = max(self.index, snapshot.index)
        for inst in snapshot.instances:
            self._services.setdefault(inst.service_type, {})[inst.key] = inst
            self.index = max(self.index, inst.modify_index)
            prev = self._service_index.get(inst.service_type, 0)
            self._service_index[inst.service_type] = max(prev, inst.modify_index)
        for svc, idx in snapshot.service_indexes.items():
            self._service_index[svc] = max(self._service_index.get(svc, 0), idx)
        self._events.extend(sorted(snapshot.events, key=lambda e: e.index))

    # -- subscriptions ---------------------------------------------------------

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def on_heartbeat(self, fn: HeartbeatListener) -> None:
        self._heartbeat_listeners.append(fn)

    def set_resume_guard(self, fn: ResumeGuard) -> None:
        """Who may veto a heartbeat reviving a dead instance (the health monitor does,
        while the instance's active check is failing)."""
        self._may_resume = fn

    # -- reads -----------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def find(self, service_type: str, instance_id: InstanceId) -> Instance | None:
        return self._services.get(service_type, {}).get(instance_key(instance_id))

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

    def count(self) -> int:
        return sum(len(group) for group in self._services.values())

    def events_since(self, index: int, limit: int | None = None) -> list[Event]:
        found = [e for e in self._events if e.index > index]
        return found[:limit] if limit is not None else found

    def oldest_event_index(self) -> int:
        return self._events[0].index if self._events else self.index

    def matching(
        self, service_type: str, predicate: Predicate, cache_key: str | None = None
    ) -> list[Instance]:
        """Live instances of one type that satisfy the predicate.

        With a cache_key (the requirements' canonical text) the answer is kept until the
        service's change index moves: discovery repeats the same few queries far more
        often than a service changes, and every change that could alter a match (status,
        busy, metadata, membership) moves that index."""
        if cache_key is not None:
            hit = self._match_cache.get((service_type, cache_key))
            if hit is not None and hit[0] == self.service_index(service_type):
                return hit[1]
        group = self._services.get(service_type, {})
        found = [i for i in group.values() if i.live and predicate(i)]
        if cache_key is not None:
            if len(self._match_cache) >= MATCH_CACHE_SIZE:
                self._match_cache.clear()
            entry = (self.service_index(service_type), found)
            self._match_cache[(service_type, cache_key)] = entry
        return found

    def discover(
        self,
        service_type: str,
        predicate: Predicate,
        strategy: str,
        key: str | None = None,
        cache_key: str | None = None,
    ) -> Instance | None:
        candidates = self.matching(service_type, predicate, cache_key)
        return self.selector.select(strategy, candidates, key)

    def drain_dirty(self) -> list[Instance]:
        """Instances whose liveness changed since the last flush (for batched writes)."""
        dirty = list(self._dirty.values())
        self._dirty.clear()
        return dirty

    def mark_dirty(self, instances: Iterable[Instance]) -> None:
        """Put back liveness a failed flush could not write (unless since removed)."""
        for inst in instances:
            if self.find(inst.service_type, inst.instance_id) is inst:
                self._dirty.setdefault((inst.service_type, inst.key), inst)

    # -- commands --------------------------------------------------------------

    def register(self, spec: InstanceSpec) -> tuple[Instance, bool]:
        """Register or update; returns the instance and whether it is new."""
        now = self._clock()
        old = self.find(spec.service_type, spec.instance_id)
        if old is not None and _same_spec(old, spec) and old.status is spec.status:
            self.heartbeat(spec.service_type, spec.instance_id)
            return old, False
        new = Instance(
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
            status_since=now if old is None or old.status is not spec.status else old.status_since,
            metrics=old.metrics if old else {},
            create_index=old.create_index if old else 0,
        )
        kind = EventKind.UPDATED if old else EventKind.REGISTERED
        reason = "re-registered" if old else "registered"
        self._commit(new, [(kind, old.status if old else None, reason)])
        return new, old is None

    def heartbeat(
        self,
        service_type: str,
        instance_id: InstanceId,
        busy: bool | None = None,
        metrics: JSONObject | None = None,
    ) -> Instance:
        return self.beat(self.get(service_type, instance_id), busy, metrics)

    def beat(
        self, inst: Instance, busy: bool | None = None, metrics: JSONObject | None = None
    ) -> Instance:
        """heartbeat() for an instance the caller already looked up (the HTTP hot path)."""
        now = self._clock()
        resumed = inst.status is Status.DEAD and self._may_resume(inst)
        if resumed or (busy is not None and busy != inst.busy):
            inst = self._heartbeat_change(inst, now, busy, metrics)
        else:  # the hot path: liveness only, no index bump, no allocation
            inst.last_heartbeat = now
            if metrics is not None:
                inst.metrics = metrics
            self._dirty[(inst.service_type, inst.key)] = inst
        for fn in self._heartbeat_listeners:
            fn(inst)
        return inst

    def _heartbeat_change(
        self, inst: Instance, now: float, busy: bool | None, metrics: JSONObject | None
    ) -> Instance:
        new = dataclasses.replace(inst, last_heartbeat=now)
        if metrics is not None:
            new.metrics = metrics
        changes: list[tuple[EventKind, Status | None, str]] = []
        if inst.status is Status.DEAD and self._may_resume(inst):
            new.status, new.status_since = Status.ACTIVE, now
            changes.append((EventKind.HEARTBEAT_RESUMED, inst.status, "heartbeat resumed"))
        if busy is not None and busy != inst.busy:
            new.busy = busy
            changes.append(_busy_change(busy, inst.status, "heartbeat"))
        self._commit(new, changes)
        return new

    def set_status(
        self,
        service_type: str,
        instance_id: InstanceId,
        status: Status | None = None,
        busy: bool | None = None,
        reason: str = "status update",
    ) -> Instance:
        inst = self.get(service_type, instance_id)
        now = self._clock()
        new = dataclasses.replace(inst)
        changes: list[tuple[EventKind, Status | None, str]] = []
        if status is not None and status is not inst.status:
            new.status, new.status_since = status, now
            if status is Status.ACTIVE:
                new.last_heartbeat = now  # a fresh TTL, or it would expire at once
            changes.append((_STATUS_KIND[status], inst.status, reason))
        if busy is not None and busy != inst.busy:
            new.busy = busy
            changes.append(_busy_change(busy, inst.status, reason))
        if changes:
            self._commit(new, changes)
            return new
        return inst

    def mark(
        self,
        service_type: str,
        instance_id: InstanceId,
        kind: EventKind,
        status: Status | None,
        reason: str,
        check_output: str | None = None,
        busy: bool | None = None,
        metrics: JSONObject | None = None,
    ) -> Instance:
        """Record a health-monitor observation; writes only when something changed."""
        inst = self.get(service_type, instance_id)
        new = dataclasses.replace(inst)
        changes: list[tuple[EventKind, Status | None, str]] = []
        if check_output is not None:
            new.check_output = check_output[:MAX_CHECK_OUTPUT]
        if metrics is not None:
            new.metrics = metrics
        if status is not None and status is not inst.status:
            new.status, new.status_since = status, self._clock()
            if status is Status.ACTIVE:
                new.last_heartbeat = self._clock()
            changes.append((kind, inst.status, reason))
        if busy is not None and busy != inst.busy:
            new.busy = busy
            changes.append(_busy_change(busy, inst.status, reason))
        if changes:
            self._commit(new, changes)
            return new
        inst.check_output, inst.metrics = new.check_output, new.metrics
        self._dirty[(inst.service_type, inst.key)] = inst
        return inst

    def deregister(
        self,
        service_type: str,
        instance_id: InstanceId,
        reason: str = "deregistered",
        kind: EventKind = EventKind.DEREGISTERED,
    ) -> Instance:
        inst = self.get(service_type, instance_id)
        index = self.index + 1
        event = self._event(index, kind, inst, inst.status, None, reason)
        batch = Batch(deletes=[(service_type, inst.key)], events=[event], index=index)
        self._journal.write(batch)
        del self._services[service_type][inst.key]
        if not self._services[service_type]:
            del self._services[service_type]
        self._dirty.pop((service_type, inst.key), None)
        self._publish(service_type, index, [event])
        return inst

    # -- internals -------------------------------------------------------------

    def _event(
        self,
        index: int,
        kind: EventKind,
        inst: Instance,
        old: Status | None,
        new: Status | None,
        reason: str,
    ) -> Event:
        return Event(
            index=index,
            time=self._clock(),
            kind=kind,
            service_type=inst.service_type,
            instance_id=inst.instance_id,
            old_status=old,
            new_status=new,
            reason=reason,
        )

    def _commit(
        self, new: Instance, changes: Sequence[tuple[EventKind, Status | None, str]]
    ) -> None:
        events = []
        index = self.index
        for kind, old_status, reason in changes:
            index += 1
            events.append(self._event(index, kind, new, old_status, new.status, reason))
        new.modify_index = index
        if not new.create_index:
            new.create_index = index
        self._journal.write(Batch(puts=[new], events=events, index=index))
        self._services.setdefault(new.service_type, {})[new.key] = new
        self._dirty.pop((new.service_type, new.key), None)
        self._publish(new.service_type, index, events)

    def _publish(self, service_type: str, index: int, events: list[Event]) -> None:
        self.index = index
        self._service_index[service_type] = index
        self._events.extend(events)
        for fn in list(self._subscribers):
            try:
                fn(events)
            except Exception:  # the change is committed: every other subscriber must hear it
                log.exception("a registry subscriber failed on index %d", index)


_STATUS_KIND = {
    Status.ACTIVE: EventKind.ACTIVE,
    Status.DEAD: EventKind.DEAD,
    Status.MAINTENANCE: EventKind.MAINTENANCE,
}


def _busy_change(busy: bool, status: Status, reason: str) -> tuple[EventKind, Status, str]:
    return (EventKind.BUSY if busy else EventKind.IDLE, status, reason)


def _same_spec(inst: Instance, spec: InstanceSpec) -> bool:
    return all(getattr(inst, f) == getattr(spec, f) for f in _SPEC_FIELDS) and (
        inst.deregister_after_s == spec.deregister_after_s
    )
