"""Plain typed data of the registry: instances, checks, statuses and events.

No I/O lives here; every other layer passes these around.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from jarvis_dns import jsontext

JSONObject = dict[str, Any]
InstanceId = int | str

DEFAULT_WEIGHT = 100
# Clients heartbeat every 10 s; three missed beats make an instance dead.
DEFAULT_TTL_S = 30.0
# Dead instances linger ten minutes so a flapping host keeps its identity.
DEFAULT_DEREGISTER_AFTER_S = 600.0
# DESIGN: the last check output is kept, <= 4 KiB of UTF-8.
MAX_CHECK_OUTPUT_BYTES = 4096


def cap_output(text: str) -> str:
    """Cut to MAX_CHECK_OUTPUT_BYTES of UTF-8 without splitting a character."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= MAX_CHECK_OUTPUT_BYTES:
        return text
    return raw[:MAX_CHECK_OUTPUT_BYTES].decode("utf-8", "ignore")


class Status(enum.StrEnum):
    ACTIVE = "active"
    DEAD = "dead"
    MAINTENANCE = "maintenance"


class EventKind(enum.StrEnum):
    REGISTERED = "registered"
    UPDATED = "updated"
    HEARTBEAT_RESUMED = "heartbeat resumed"
    BUSY = "busy"
    IDLE = "idle"
    CHECK_FAILED = "check failed"
    CHECK_PASSED = "check passed"
    TTL_EXPIRED = "ttl expired"
    DEAD = "dead"
    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    REMOVED = "removed"
    DEREGISTERED = "deregistered"


@dataclass(frozen=True, slots=True)
class Check:
    """An active health check run by the health monitor."""

    type: Literal["http", "tcp"] = "http"
    path: str = "/health"
    # None: the server's --check-interval / --check-timeout (60 s / 5 s by default).
    interval_s: float | None = None
    timeout_s: float | None = None
    failures_before_dead: int = 3
    successes_before_active: int = 1

    def to_dict(self) -> JSONObject:
        return {
            "type": self.type,
            "path": self.path,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
            "failures_before_dead": self.failures_before_dead,
            "successes_before_active": self.successes_before_active,
        }


# Not frozen, as Event below: a frozen dataclass's __init__ sets each field through
# object.__setattr__, and the two made a registration execute 7% more instructions
# (cachegrind, in process). Nothing changes either once made.
@dataclass(slots=True)
class InstanceSpec:
    """What a client asks to register: validated, not yet stored."""

    service_type: str
    instance_id: InstanceId
    host: str
    port: int
    metadata: JSONObject = field(default_factory=dict)
    weight: int = DEFAULT_WEIGHT
    busy: bool = False
    status: Status = Status.ACTIVE
    ttl_s: float = DEFAULT_TTL_S
    check: Check | None = None
    deregister_after_s: float | None = None


# The string form of an instance id used in keys and DNS labels: an integer's digits, a
# label itself. str itself, not a function that calls it: a registration asks for it
# about fourteen times, and the call of a Python function was 1.5% of its instructions.
instance_key: Callable[[InstanceId], str] = str


@dataclass(slots=True)
class Instance:
    """One registered instance as the registry keeps it.

    Owned and mutated only by the Registry; everyone else reads.
    """

    service_type: str
    instance_id: InstanceId
    host: str
    port: int
    metadata: JSONObject
    weight: int
    busy: bool
    status: Status
    ttl_s: float
    check: Check | None
    deregister_after_s: float | None
    registered_at: float
    last_heartbeat: float
    status_since: float
    metrics: JSONObject = field(default_factory=dict)
    check_output: str = ""
    # Its active check failed failures_before_dead times with no pass since: a heartbeat
    # does not revive it (or it would flap in and out of answers with every beat).
    check_failing: bool = False
    create_index: int = 0
    modify_index: int = 0
    # to_json()'s text, kept until the instance changes: the store writes it and the
    # HTTP answer sends it, and encoding it once is a good part of a registration's cost.
    # Not copied by revised() (a plan's new instance starts without it); registry/apply.py
    # clears it when it changes an instance in place.
    encoded: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        return instance_key(self.instance_id)

    def to_json(self) -> str:
        """to_dict() as compact JSON, encoded once per version of the instance."""
        if self.encoded is None:
            self.encoded = jsontext.encode(self.to_dict())
        return self.encoded

    @property
    def live(self) -> bool:
        return self.status is Status.ACTIVE

    def copy(self) -> Instance:
        return copy.deepcopy(self)

    def revised(self) -> Instance:
        """A shallow copy for a plan to change (dataclasses.replace costs several times
        as much), without the kept JSON."""
        new: Instance = object.__new__(Instance)
        for name in _INSTANCE_FIELDS:
            setattr(new, name, getattr(self, name))
        new.encoded = None
        return new

    def to_dict(self) -> JSONObject:
        """The public JSON shape (HTTP, events, storage)."""
        return {
            "service_type": self.service_type,
            "instance_id": self.instance_id,
            "host": self.host,
            "port": self.port,
            "metadata": self.metadata,
            "weight": self.weight,
            "busy": self.busy,
            "status": self.status.value,
            "ttl_s": self.ttl_s,
            "check": self.check.to_dict() if self.check else None,
            "deregister_after_s": self.deregister_after_s,
            "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat,
            "status_since": self.status_since,
            "metrics": self.metrics,
            "check_output": self.check_output,
            "check_failing": self.check_failing,
            "create_index": self.create_index,
            "modify_index": self.modify_index,
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> Instance:
        """Inverse of to_dict, for data this program wrote itself."""
        check = d.get("check")
        return cls(
            service_type=d["service_type"],
            instance_id=d["instance_id"],
            host=d["host"],
            port=int(d["port"]),
            metadata=dict(d.get("metadata") or {}),
            weight=int(d.get("weight", DEFAULT_WEIGHT)),
            busy=bool(d.get("busy", False)),
            status=Status(d.get("status", "active")),
            ttl_s=float(d.get("ttl_s", DEFAULT_TTL_S)),
            check=Check(**check) if check else None,
            deregister_after_s=d.get("deregister_after_s"),
            registered_at=float(d["registered_at"]),
            last_heartbeat=float(d["last_heartbeat"]),
            status_since=float(d["status_since"]),
            metrics=dict(d.get("metrics") or {}),
            check_output=str(d.get("check_output", "")),
            check_failing=bool(d.get("check_failing", False)),
            create_index=int(d.get("create_index", 0)),
            modify_index=int(d.get("modify_index", 0)),
        )


# What revised() copies: every field but the kept JSON.
_INSTANCE_FIELDS = tuple(f.name for f in fields(Instance) if f.init)


@dataclass(slots=True)
class Event:
    """One transition of one instance, kept in the bounded event log. A value: only
    apply.stamp numbers a batch's own drafts; nothing changes an event once applied."""

    index: int
    time: float
    kind: EventKind
    service_type: str
    instance_id: InstanceId
    old_status: Status | None
    new_status: Status | None
    reason: str

    def to_dict(self) -> JSONObject:
        return {
            "index": self.index,
            "time": self.time,
            "kind": self.kind.value,
            "service_type": self.service_type,
            "instance_id": self.instance_id,
            "old_status": self.old_status.value if self.old_status else None,
            "new_status": self.new_status.value if self.new_status else None,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> Event:
        old, new = d.get("old_status"), d.get("new_status")
        return cls(
            index=int(d["index"]),
            time=float(d["time"]),
            kind=EventKind(d["kind"]),
            service_type=d["service_type"],
            instance_id=d["instance_id"],
            old_status=Status(old) if old else None,
            new_status=Status(new) if new else None,
            reason=str(d.get("reason", "")),
        )


Key = tuple[str, str]  # (service_type, instance key)


@dataclass(slots=True)
class Batch:
    """One atomic change planned against the view; the store commits it and numbers it.

    `puts` are new Instance objects owned by the batch (never ones the view holds), and
    `events` are drafts: both get the change index when the batch is stamped (one index
    per batch; every event of a batch carries it). `durable` batches are on disk before
    their request is answered; the others (busy flips) are liveness-class: written with
    the next group, at most one flush interval lost in a crash. `reads` holds the
    modify_index of every key the plan looked at (0: absent), so a store shared by
    several nodes can refuse a batch planned against a stale view.
    """

    puts: list[Instance] = field(default_factory=list)
    deletes: list[Key] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    durable: bool = True
    reads: dict[Key, int] = field(default_factory=dict)
    index: int = 0  # 0 until stamped

    def services(self) -> set[str]:
        return {i.service_type for i in self.puts} | {svc for svc, _ in self.deletes}


@dataclass(frozen=True, slots=True)
class LivenessRow:
    """A copy of one instance's liveness fields, for the batched flush (never the live
    object: the view keeps changing while a flush is written)."""

    service_type: str
    key: str
    last_heartbeat: float
    metrics: JSONObject
    check_output: str
    modify_index: int


@dataclass(slots=True)
class Snapshot:
    """Everything a store kept, handed to the registry at start."""

    instances: list[Instance] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    index: int = 0
    service_indexes: dict[str, int] = field(default_factory=dict)
