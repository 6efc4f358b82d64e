"""A fleet for tests that need one but no I/O: the registry's pure core, driven in step.

``Ledger.run`` is what ``changes.Changes.run`` does without a store: plan against the
view, apply with the next index, tell the subscribers. DNS and discovery tests build
their fleets with it synchronously; tests of the change path itself use ``Changes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jarvis_dns.discovery import Discovery
from jarvis_dns.models import Event, Instance, InstanceId, InstanceSpec, JSONObject, Status
from jarvis_dns.registry import (
    Command,
    Deregister,
    EventLog,
    Heartbeat,
    Register,
    SetStatus,
    Touch,
    View,
    apply,
    plan,
    touch,
)

Subscriber = Callable[[Sequence[Event]], None]


class Ledger:
    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self.clock = clock
        self.view = View()
        self.events = EventLog()
        self.discovery = Discovery(self.view)
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def run(self, command: Command) -> Instance | None:
        before = self.view.find(*command.key)
        planned = plan(self.view, command, self.clock())
        if planned is None:
            return before
        if isinstance(planned, Touch):
            return touch(self.view, planned)
        events = apply(self.view, self.view.index + 1, planned)
        self.events.extend(events)
        for fn in list(self._subscribers):
            fn(events)
        return self.view.find(*command.key) or before

    # -- the commands by name, as the faces use them ---------------------------------

    def register(self, spec: InstanceSpec) -> Instance:
        inst = self.run(Register(spec))
        assert inst is not None
        return inst

    def heartbeat(
        self,
        service_type: str,
        instance_id: InstanceId,
        busy: bool | None = None,
        metrics: JSONObject | None = None,
    ) -> Instance | None:
        return self.run(Heartbeat(service_type, instance_id, busy, metrics))

    def set_status(
        self,
        service_type: str,
        instance_id: InstanceId,
        status: Status | None = None,
        busy: bool | None = None,
        reason: str = "status update",
    ) -> Instance | None:
        return self.run(SetStatus(service_type, instance_id, status, busy, reason))

    def deregister(self, service_type: str, instance_id: InstanceId) -> Instance | None:
        return self.run(Deregister(service_type, instance_id))

    # -- reads ---------------------------------------------------------------------

    @property
    def index(self) -> int:
        return self.view.index

    def find(self, service_type: str, instance_id: InstanceId) -> Instance | None:
        return self.view.find(service_type, instance_id)

    def get(self, service_type: str, instance_id: InstanceId) -> Instance:
        return self.view.get(service_type, instance_id)
