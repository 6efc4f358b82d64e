"""The Registry: commands, change index, events, journal-first writes. No I/O."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conftest import FakeClock

from jarvis_dns.errors import NotFound, StoreError
from jarvis_dns.matching import compile_requirements
from jarvis_dns.models import Batch, Event, EventKind, InstanceSpec, Status
from jarvis_dns.registry import Registry


def spec(svc: str = "auth", iid: int | str = 1, **kw: object) -> InstanceSpec:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": 5000 + int(str(iid)[-1:] or 0)}
    fields.update(kw)
    return InstanceSpec(service_type=svc, instance_id=iid, **fields)  # type: ignore[arg-type]


class RecordingJournal:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.fail = False

    def write(self, batch: Batch) -> None:
        if self.fail:
            raise StoreError("disk full")
        self.batches.append(batch)


def test_register_new_then_update(clock: FakeClock) -> None:
    reg = Registry(clock)
    inst, created = reg.register(spec(metadata={"v": 1}))
    assert created and inst.create_index == inst.modify_index == reg.index == 1
    clock.advance(5)
    again, created = reg.register(spec(metadata={"v": 2}))
    assert not created
    assert again.create_index == 1 and again.modify_index == 2
    assert again.registered_at == inst.registered_at
    assert [e.kind for e in reg.events_since(0)] == [EventKind.REGISTERED, EventKind.UPDATED]


def test_identical_reregistration_is_a_heartbeat(clock: FakeClock) -> None:
    reg = Registry(clock)
    reg.register(spec())
    clock.advance(3)
    inst, created = reg.register(spec())
    assert not created and reg.index == 1
    assert inst.last_heartbeat == clock.now


def test_heartbeat_only_touches_liveness(clock: FakeClock) -> None:
    reg = Registry(clock)
    reg.register(spec())
    seen: list[Sequence[Event]] = []
    reg.subscribe(seen.append)
    clock.advance(10)
    inst = reg.heartbeat("auth", 1, metrics={"load": 3})
    assert reg.index == 1 and seen == []
    assert inst.last_heartbeat == clock.now and inst.metrics == {"load": 3}
    assert reg.drain_dirty() == [inst]
    assert reg.drain_dirty() == []


def test_heartbeat_busy_and_resume(clock: FakeClock) -> None:
    reg = Registry(clock)
    reg.register(spec())
    reg.heartbeat("auth", 1, busy=True)
    reg.mark("auth", 1, EventKind.TTL_EXPIRED, Status.DEAD, "ttl expired")
    inst = reg.heartbeat("auth", 1, busy=False)
    assert inst.status is Status.ACTIVE and not inst.busy
    kinds = [e.kind for e in reg.events_since(1)]
    assert kinds == [
        EventKind.BUSY,
        EventKind.TTL_EXPIRED,
        EventKind.HEARTBEAT_RESUMED,
        EventKind.IDLE,
    ]
    resumed = reg.events_since(0)[-2]
    assert (resumed.old_status, resumed.new_status) == (Status.DEAD, Status.ACTIVE)


def test_unknown_instance_is_not_found(clock: FakeClock) -> None:
    reg = Registry(clock)
    for call in (
        lambda: reg.heartbeat("auth", 9),
        lambda: reg.set_status("auth", 9, Status.DEAD),
        lambda: reg.deregister("auth", 9),
    ):
        with pytest.raises(NotFound):
            call()


def test_status_and_deregister_keep_the_index_monotonic(clock: FakeClock) -> None:
    reg = Registry(clock)
    reg.register(spec("auth", 1))
    reg.register(spec("auth", 2))
    reg.set_status("auth", 1, Status.MAINTENANCE)
    reg.deregister("auth", 2)
    assert reg.index == 4
    assert reg.service_index("auth") == 4
    reg.deregister("auth", 1)
    assert reg.service_types() == [] and reg.service_index("auth") == 5


def test_journal_failure_changes_nothing(clock: FakeClock) -> None:
    journal = RecordingJournal()
    reg = Registry(clock, journal=journal)
    reg.register(spec())
    journal.fail = True
    with pytest.raises(StoreError):
        reg.register(spec(metadata={"v": 2}))
    with pytest.raises(StoreError):
        reg.deregister("auth", 1)
    with pytest.raises(StoreError):
        reg.set_status("auth", 1, busy=True)
    inst = reg.get("auth", 1)
    assert inst.metadata == {} and not inst.busy and reg.index == 1
    assert len(reg.events_since(0)) == 1


def test_journal_gets_every_change_before_subscribers(clock: FakeClock) -> None:
    journal = RecordingJournal()
    reg = Registry(clock, journal=journal)
    order: list[str] = []
    reg.subscribe(lambda events: order.append(f"event {events[-1].index}"))
    reg.register(spec())
    reg.deregister("auth", 1)
    assert [b.index for b in journal.batches] == [1, 2]
    assert journal.batches[1].deletes == [("auth", "1")]
    assert order == ["event 1", "event 2"]


def test_discovery_is_strict_and_only_live(clock: FakeClock) -> None:
    reg = Registry(clock)
    reg.register(spec("auth", 1, metadata={"capabilities": ["oauth"]}))
    reg.register(spec("auth", 2, metadata={"capabilities": ["oauth"]}, busy=True))
    reg.register(spec("auth", 3, metadata={"capabilities": ["jwt"]}))
    reg.register(spec("other", 4, metadata={"capabilities": ["oauth"]}))
    want = compile_requirements({"capabilities": ["oauth"], "busy": False})
    for _ in range(5):
        found = reg.discover("auth", want, "round_robin")
        assert found is not None and found.instance_id == 1
    reg.set_status("auth", 1, Status.DEAD)
    assert reg.discover("auth", want, "round_robin") is None
    assert reg.discover("nothing", want, "round_robin") is None


def test_event_log_is_bounded(clock: FakeClock) -> None:
    reg = Registry(clock, event_log_size=5)
    for i in range(10):
        reg.register(spec("auth", i))
    assert [e.index for e in reg.events_since(0)] == [6, 7, 8, 9, 10]
    assert reg.oldest_event_index() == 6
    assert [e.index for e in reg.events_since(8, limit=1)] == [9]


def test_cached_matching_follows_every_change(clock: FakeClock) -> None:
    from jarvis_dns.matching import compile_cached

    reg = Registry(clock)
    reg.register(spec("auth", 1, metadata={"v": 1}))
    key, want = compile_cached({"v": 1, "busy": False})
    assert [i.instance_id for i in reg.matching("auth", want, key)] == [1]
    reg.register(spec("auth", 2, metadata={"v": 1}))
    assert [i.instance_id for i in reg.matching("auth", want, key)] == [1, 2]
    reg.set_status("auth", 1, busy=True)
    assert [i.instance_id for i in reg.matching("auth", want, key)] == [2]
    reg.mark("auth", 2, EventKind.TTL_EXPIRED, Status.DEAD, "ttl expired")
    assert reg.matching("auth", want, key) == []
    reg.heartbeat("auth", 2)
    assert [i.instance_id for i in reg.matching("auth", want, key)] == [2]
    reg.register(spec("auth", 2, metadata={"v": 2}))
    assert reg.matching("auth", want, key) == []
    assert compile_cached({"busy": False, "v": 1})[0] == key  # key order does not matter
