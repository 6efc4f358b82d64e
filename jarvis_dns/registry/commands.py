"""What may be asked of the registry: one small type per command (pure data).

Every writer (HTTP v1, the legacy routes, the health monitor, the CLI through HTTP)
builds one of these and hands it to ``changes.Changes``; ``plan`` turns it into a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from jarvis_dns.models import EventKind, InstanceId, InstanceSpec, JSONObject, Key, Status


@dataclass(frozen=True, slots=True)
class Register:
    spec: InstanceSpec

    @property
    def key(self) -> Key:
        return (self.spec.service_type, str(self.spec.instance_id))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    service_type: str
    instance_id: InstanceId
    busy: bool | None = None
    metrics: JSONObject | None = None

    @property
    def key(self) -> Key:
        return (self.service_type, str(self.instance_id))


@dataclass(frozen=True, slots=True)
class SetStatus:
    service_type: str
    instance_id: InstanceId
    status: Status | None = None
    busy: bool | None = None
    reason: str = "status update"

    @property
    def key(self) -> Key:
        return (self.service_type, str(self.instance_id))


@dataclass(frozen=True, slots=True)
class Observe:
    """One active-check result, as the health monitor judged it."""

    service_type: str
    instance_id: InstanceId
    kind: EventKind
    status: Status | None
    reason: str
    output: str
    busy: bool | None = None
    metrics: JSONObject | None = None
    failing: bool = False

    @property
    def key(self) -> Key:
        return (self.service_type, str(self.instance_id))


@dataclass(frozen=True, slots=True)
class Expire:
    """TTL expiry: only if no heartbeat came after the one the monitor judged."""

    service_type: str
    instance_id: InstanceId
    seen_heartbeat: float

    @property
    def key(self) -> Key:
        return (self.service_type, str(self.instance_id))


@dataclass(frozen=True, slots=True)
class Remove:
    """Cleanup of an instance dead for deregister_after_s: only while it is still dead."""

    service_type: str
    instance_id: InstanceId
    reason: str

    @property
    def key(self) -> Key:
        return (self.service_type, str(self.instance_id))


@dataclass(frozen=True, slots=True)
class Deregister:
    service_type: str
    instance_id: InstanceId
    reason: str = "deregistered"

    @property
    def key(self) -> Key:
        return (self.service_type, str(self.instance_id))


Command = Register | Heartbeat | SetStatus | Observe | Expire | Remove | Deregister
