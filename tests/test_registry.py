"""The change path: plan is pure, the store numbers, apply changes the view, in order.

Plan and apply are tested without I/O; Changes over a MemoryStore (or a store that fails
or stalls on command) for what the one writer adds: commit before apply, index order,
one command at a time per instance, subscribers after the fact.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Sequence

import pytest
from conftest import FakeClock, eventually, new_changes
from fake_store import ScriptedStore

from jarvis_dns.changes import FLUSH_CHUNK, Changes
from jarvis_dns.discovery import Discovery
from jarvis_dns.errors import NotFound, StoreError
from jarvis_dns.matching import compile_cached, compile_requirements
from jarvis_dns.models import Batch, Event, EventKind, InstanceSpec, LivenessRow, Status
from jarvis_dns.registry import (
    EventLog,
    Expire,
    Heartbeat,
    Observe,
    Register,
    Touch,
    View,
    apply,
    plan,
)


def spec(svc: str = "auth", iid: int | str = 1, **kw: object) -> InstanceSpec:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": 5000 + len(str(iid))}
    fields.update(kw)
    return InstanceSpec(service_type=svc, instance_id=iid, **fields)  # type: ignore[arg-type]


def kinds(changes: Changes, since: int = 0) -> list[EventKind]:
    return [e.kind for e in changes.events.since(since)]


# -- plan and apply (pure) ---------------------------------------------------------


def test_plan_never_changes_the_view() -> None:
    view = View()
    batch = plan(view, Register(spec()), 10.0)
    assert isinstance(batch, Batch) and view.count() == 0
    apply(view, 1, batch)
    before = view.get("auth", 1).to_dict()
    for command in (
        Register(spec(metadata={"v": 2})),
        Heartbeat("auth", 1, busy=True),
        Expire("auth", 1, seen_heartbeat=10.0),
    ):
        planned = plan(view, command, 99.0)
        assert planned is not None
        assert view.get("auth", 1).to_dict() == before and view.index == 1


def test_a_batch_owns_new_objects_and_records_what_it_read() -> None:
    view = View()
    apply(view, 1, plan(view, Register(spec()), 0.0))  # type: ignore[arg-type]
    batch = plan(view, Heartbeat("auth", 1, busy=True), 1.0)
    assert isinstance(batch, Batch) and not batch.durable  # a busy flip is liveness-class
    assert batch.puts[0] is not view.get("auth", 1)
    assert batch.reads == {("auth", "1"): 1}


def test_one_index_per_batch_for_all_its_events() -> None:
    view = View()
    apply(view, 1, plan(view, Register(spec()), 0.0))  # type: ignore[arg-type]
    apply(view, 2, plan(view, Expire("auth", 1, seen_heartbeat=0.0), 40.0))  # type: ignore[arg-type]
    batch = plan(view, Heartbeat("auth", 1, busy=True), 41.0)
    assert isinstance(batch, Batch) and batch.durable  # it revives: durable
    events = apply(view, 3, batch)
    assert [(e.kind, e.index) for e in events] == [
        (EventKind.HEARTBEAT_RESUMED, 3),
        (EventKind.BUSY, 3),
    ]
    assert view.get("auth", 1).modify_index == 3 and view.get("auth", 1).create_index == 1


def test_a_heartbeat_does_not_revive_an_instance_whose_check_fails() -> None:
    view = View()
    apply(view, 1, plan(view, Register(spec()), 0.0))  # type: ignore[arg-type]
    failed = Observe(
        "auth", 1, EventKind.CHECK_FAILED, Status.DEAD, "HTTP 500", "HTTP 500", failing=True
    )
    apply(view, 2, plan(view, failed, 1.0))  # type: ignore[arg-type]
    assert view.get("auth", 1).check_failing
    assert isinstance(plan(view, Heartbeat("auth", 1), 2.0), Touch)
    passed = Observe("auth", 1, EventKind.CHECK_PASSED, None, "HTTP 200", "HTTP 200")
    crossing = plan(view, passed, 3.0)
    assert isinstance(crossing, Batch) and [e.kind for e in crossing.events] == [
        EventKind.CHECK_PASSED
    ]
    apply(view, 3, crossing)
    resumed = plan(view, Heartbeat("auth", 1), 4.0)
    assert isinstance(resumed, Batch) and resumed.events[0].kind is EventKind.HEARTBEAT_RESUMED


def test_an_expiry_planned_before_a_heartbeat_changes_nothing() -> None:
    view = View()
    apply(view, 1, plan(view, Register(spec()), 0.0))  # type: ignore[arg-type]
    seen = view.get("auth", 1).last_heartbeat
    touch = plan(view, Heartbeat("auth", 1), 29.0)
    assert isinstance(touch, Touch)
    from jarvis_dns.registry import touch as apply_touch

    apply_touch(view, touch)
    assert plan(view, Expire("auth", 1, seen_heartbeat=seen), 31.0) is None


def test_the_same_log_gives_the_same_view_and_events() -> None:
    """What a second node does: apply the batches the first one committed."""
    first, log = View(), EventLog()
    batches: list[tuple[int, Batch]] = []
    commands = [
        Register(spec("auth", 1, metadata={"tags": ["a"]})),
        Register(spec("auth", "blue", busy=True)),
        Heartbeat("auth", "blue", busy=False),
        Expire("auth", 1, seen_heartbeat=1.0),
        Register(spec("db", 7)),
    ]
    for n, command in enumerate(commands, start=1):
        batch = plan(first, command, float(n))
        assert isinstance(batch, Batch)
        log.extend(apply(first, n, batch))
        batches.append(
            (n, dataclasses.replace(batch, puts=[dataclasses.replace(i) for i in batch.puts]))
        )
    second, log2 = View(), EventLog()
    for index, batch in batches:
        log2.extend(apply(second, index, batch))
    assert [i.to_dict() for i in second.all_instances()] == [
        i.to_dict() for i in first.all_instances()
    ]
    assert log2.since(0) == log.since(0) and second.index == first.index == 5


# -- Changes: the one writer ---------------------------------------------------------


async def test_register_new_then_update(clock: FakeClock) -> None:
    changes = new_changes(clock)
    inst, created = await changes.register(spec(metadata={"v": 1}))
    assert created and inst.create_index == inst.modify_index == changes.view.index == 1
    clock.advance(5)
    again, created = await changes.register(spec(metadata={"v": 2}))
    assert not created
    assert again.create_index == 1 and again.modify_index == 2
    assert again.registered_at == inst.registered_at
    assert kinds(changes) == [EventKind.REGISTERED, EventKind.UPDATED]


async def test_identical_reregistration_is_a_heartbeat(clock: FakeClock) -> None:
    changes = new_changes(clock)
    await changes.register(spec())
    clock.advance(3)
    inst, created = await changes.register(spec())
    assert not created and changes.view.index == 1
    assert inst.last_heartbeat == clock.now


async def test_heartbeat_only_touches_liveness_and_the_flush_gets_copies(clock: FakeClock) -> None:
    changes = new_changes(clock)
    await changes.register(spec())
    seen: list[Sequence[Event]] = []
    changes.subscribe(seen.append)
    clock.advance(10)
    inst = await changes.heartbeat("auth", 1, metrics={"load": 3})
    assert changes.view.index == 1 and seen == []
    assert inst.last_heartbeat == clock.now and inst.metrics == {"load": 3}
    rows = changes.liveness.drain()
    clock.advance(10)
    await changes.heartbeat("auth", 1, metrics={"load": 4})  # the view moves on ...
    assert [(r.last_heartbeat, r.metrics) for r in rows] == [(clock.now - 10, {"load": 3})]
    assert rows[0].modify_index == 1  # ... the drained copy does not


async def test_unknown_instance_is_not_found(clock: FakeClock) -> None:
    changes = new_changes(clock)
    with pytest.raises(NotFound):
        await changes.heartbeat("auth", 9)
    with pytest.raises(NotFound):
        await changes.set_status("auth", 9, Status.DEAD)
    with pytest.raises(NotFound):
        await changes.deregister("auth", 9)
    assert changes.view.index == 0 and len(changes.events) == 0


async def test_status_and_deregister_keep_the_index_monotonic(clock: FakeClock) -> None:
    changes = new_changes(clock)
    await changes.register(spec("auth", 1))
    await changes.register(spec("auth", 2))
    await changes.set_status("auth", 1, Status.MAINTENANCE)
    gone = await changes.deregister("auth", 2)
    assert gone.instance_id == 2
    view = changes.view
    assert view.index == 4 and view.service_index("auth") == 4
    await changes.deregister("auth", 1)
    assert view.service_types() == [] and view.service_index("auth") == 5


async def test_a_failed_commit_changes_nothing(clock: FakeClock) -> None:
    store = ScriptedStore()
    changes = new_changes(clock, store)
    await changes.register(spec())
    told: list[Sequence[Event]] = []
    changes.subscribe(told.append)
    store.fail = True
    with pytest.raises(StoreError):
        await changes.register(spec(metadata={"v": 2}))
    with pytest.raises(StoreError):
        await changes.deregister("auth", 1)
    with pytest.raises(StoreError):
        await changes.set_status("auth", 1, busy=True)
    inst = changes.view.get("auth", 1)
    assert inst.metadata == {} and not inst.busy and changes.view.index == 1
    assert len(changes.events) == 1 and told == []
    store.fail = False  # recovers without a restart
    await changes.set_status("auth", 1, busy=True)
    assert changes.view.get("auth", 1).busy


class _FailsBeforeAwaiting(ScriptedStore):
    """A commit() that raises before it hands back an awaitable (SQLite's commit is a
    plain function returning the writer's future)."""

    def commit(self, batch: Batch) -> Awaitable[int]:  # type: ignore[override]
        if self.fail:
            raise StoreError("disk full")
        return super().commit(batch)


async def test_a_commit_failing_at_once_changes_nothing_and_blocks_nothing(
    clock: FakeClock,
) -> None:
    store = _FailsBeforeAwaiting()
    changes = new_changes(clock, store)
    await changes.register(spec())
    store.fail = True
    with pytest.raises(StoreError):
        await changes.register(spec(metadata={"v": 2}))
    assert changes.view.get("auth", 1).metadata == {} and changes.view.index == 1
    store.fail = False  # the batches after it are applied: the failed one held no turn
    await asyncio.wait_for(changes.register(spec(iid=2)), 5)
    await asyncio.wait_for(changes.set_status("auth", 1, busy=True), 5)
    assert changes.view.find("auth", 2) is not None and changes.view.get("auth", 1).busy
    assert changes.view.index == 3


async def test_submit_answers_without_a_task_once_its_batch_is_applied(
    clock: FakeClock,
) -> None:
    """The fast lane's registrations: a plain future, no task, when nothing holds the
    instance; behind a command in flight on it, run() in a task, planned on what the
    first left."""
    store = ScriptedStore()
    changes = new_changes(clock, store)
    gate = store.hold()
    first = changes.submit(Register(spec()))
    behind = changes.submit(Register(spec(metadata={"v": 2})))
    assert isinstance(first, asyncio.Future) and not isinstance(first, asyncio.Task)
    assert isinstance(behind, asyncio.Task)
    await eventually(lambda: store.waiting == 1)
    assert changes.view.find("auth", 1) is None  # not applied before it is committed
    gate.set()
    inst = await first
    assert inst is not None and inst.metadata == {} and inst.modify_index == 1
    updated = await behind
    assert updated is not None and updated.metadata == {"v": 2} and updated.modify_index == 2
    assert changes.view.get("auth", 1).metadata == {"v": 2}


async def test_a_failed_submit_changes_nothing_and_frees_its_instance(clock: FakeClock) -> None:
    store = ScriptedStore()
    changes = new_changes(clock, store)
    store.fail = True
    failed = changes.submit(Register(spec()))
    assert isinstance(failed, asyncio.Future)
    with pytest.raises(StoreError):
        await failed
    assert changes.view.find("auth", 1) is None and changes.view.index == 0
    store.fail = False
    again = changes.submit(Register(spec()))  # a plain future: the lock was given back
    assert isinstance(again, asyncio.Future) and not isinstance(again, asyncio.Task)
    inst = await again
    assert inst is not None and inst.modify_index == 1


async def test_a_stalled_commit_holds_only_writes_behind_it(clock: FakeClock) -> None:
    """Reads, discovery and plain heartbeats go on; writes wait their turn in the log."""
    store = ScriptedStore()
    changes = new_changes(clock, store)
    discovery = Discovery(changes.view)
    for iid in (1, 2, 3):
        await changes.register(spec("auth", iid))
    gate = store.hold()
    stalled = asyncio.create_task(changes.register(spec("auth", 1, metadata={"v": 2})))
    behind = asyncio.create_task(changes.set_status("auth", 2, busy=True))
    await eventually(lambda: store.waiting == 2)
    clock.advance(1)
    beat = await changes.heartbeat("auth", 3, metrics={"load": 1})  # answers at once
    assert beat.last_heartbeat == clock.now
    assert changes.view.get("auth", 1).metadata == {}  # not applied before it is committed
    found = discovery.discover("auth", compile_requirements(None), "round_robin")
    assert found is not None
    assert not stalled.done() and not behind.done()
    gate.set()
    await asyncio.gather(stalled, behind)
    assert changes.view.get("auth", 1).metadata == {"v": 2}
    assert changes.view.get("auth", 2).busy
    assert [e.index for e in changes.events.since(3)] == [4, 5]


async def test_batches_apply_in_index_order_whatever_order_commits_finish(
    clock: FakeClock,
) -> None:
    store = ScriptedStore()
    changes = new_changes(clock, store)
    applied: list[int] = []
    changes.subscribe(lambda events: applied.extend(e.index for e in events))
    gate = store.hold()
    first = asyncio.create_task(changes.register(spec("auth", 1)))
    await eventually(lambda: store.waiting == 1)
    store.gate = None  # the second commit finishes at once ...
    second = asyncio.create_task(changes.register(spec("auth", 2)))
    await eventually(lambda: len(store.committed) == 1)
    assert applied == [] and not second.done()  # ... but waits for the first to apply
    gate.set()
    await asyncio.gather(first, second)
    assert applied == [1, 2]
    assert second.result()[0].modify_index == 2


async def test_commands_on_one_instance_run_one_at_a_time(clock: FakeClock) -> None:
    """100 concurrent flips: each plans against what the previous one left."""
    store = ScriptedStore()
    changes = new_changes(clock, store)
    await changes.register(spec())
    wanted = [n % 3 != 0 for n in range(100)]
    await asyncio.gather(*(changes.set_status("auth", 1, busy=b) for b in wanted))
    events = changes.events.since(1)
    flips = [e.kind is EventKind.BUSY for e in events]
    # every change that changed something is an event, alternating, none lost
    expected = [b for prev, b in zip([False, *wanted], wanted, strict=False) if b != prev]
    assert flips == expected
    assert changes.view.get("auth", 1).busy is wanted[-1]
    assert [e.index for e in events] == list(range(2, 2 + len(events)))


async def test_subscribers_hear_after_the_store_has_it(clock: FakeClock) -> None:
    store = ScriptedStore()
    changes = new_changes(clock, store)
    order: list[str] = []
    changes.subscribe(lambda events: order.append(f"event {events[-1].index}"))
    changes.subscribe(lambda events: order.append(f"stored {len(store.committed)}"))
    await changes.register(spec())
    await changes.deregister("auth", 1)
    assert store.committed[1].deletes == [("auth", "1")]
    assert order == ["event 1", "stored 1", "event 2", "stored 2"]


async def test_a_failing_subscriber_does_not_stop_the_others(clock: FakeClock) -> None:
    changes = new_changes(clock)
    heard: list[int] = []

    def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("bug")

    changes.subscribe(broken)
    changes.subscribe(lambda events: heard.append(events[0].index))
    await changes.register(spec())
    assert heard == [1]


async def test_liveness_flush_puts_back_what_failed(clock: FakeClock) -> None:
    store = ScriptedStore()
    changes = new_changes(clock, store)
    await changes.register(spec())
    await changes.heartbeat("auth", 1, metrics={"load": 1})
    store.fail = True
    assert not await changes.flush_liveness()
    assert len(changes.liveness) == 1
    store.fail = False
    assert await changes.flush_liveness()
    assert len(changes.liveness) == 0
    kept = (await store.load()).instances[0]
    assert kept.metrics == {"load": 1}


async def test_a_big_liveness_flush_lets_the_loop_run_between_chunks(clock: FakeClock) -> None:
    """Copying tens of thousands of beaten instances in one go held every request (and
    DNS) for about 80 ms: the flush copies FLUSH_CHUNK at a time and lets the loop turn."""
    store = ScriptedStore()
    changes = new_changes(clock, store)
    beaten = 3 * FLUSH_CHUNK + 1
    for i in range(beaten):
        await changes.register(spec("auth", i))
        await changes.heartbeat("auth", i, metrics={"load": i})
    turns = 0
    seen: list[int] = []

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def write_liveness(rows: Sequence[LivenessRow]) -> None:
        seen.append(turns)
        assert len(rows) == beaten
        await store.inner.write_liveness(rows)

    store.write_liveness = write_liveness  # type: ignore[method-assign]
    running = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    assert await changes.flush_liveness()
    running.cancel()
    assert seen and seen[0] - before >= 3  # one turn at least between the four chunks
    kept = {i.key: i.metrics for i in (await store.load()).instances}
    assert kept[str(beaten - 1)] == {"load": beaten - 1}


async def test_event_log_is_bounded(clock: FakeClock) -> None:
    changes = Changes(ScriptedStore(), clock, events=EventLog(5))
    for i in range(10):
        await changes.register(spec("auth", i))
    assert [e.index for e in changes.events.since(0)] == [6, 7, 8, 9, 10]
    assert changes.events.oldest_index(0) == 6
    assert [e.index for e in changes.events.since(8, limit=1)] == [9]


# -- discovery over the view ---------------------------------------------------------


async def test_discovery_is_strict_and_only_live(clock: FakeClock) -> None:
    changes = new_changes(clock)
    discovery = Discovery(changes.view)
    await changes.register(spec("auth", 1, metadata={"capabilities": ["oauth"]}))
    await changes.register(spec("auth", 2, metadata={"capabilities": ["oauth"]}, busy=True))
    await changes.register(spec("auth", 3, metadata={"capabilities": ["jwt"]}))
    await changes.register(spec("other", 4, metadata={"capabilities": ["oauth"]}))
    want = compile_requirements({"capabilities": ["oauth"], "busy": False})
    for _ in range(5):
        found = discovery.discover("auth", want, "round_robin")
        assert found is not None and found.instance_id == 1
    await changes.set_status("auth", 1, Status.DEAD)
    assert discovery.discover("auth", want, "round_robin") is None
    assert discovery.discover("nothing", want, "round_robin") is None


async def test_cached_matching_follows_every_change(clock: FakeClock) -> None:
    changes = new_changes(clock)
    discovery = Discovery(changes.view)
    await changes.register(spec("auth", 1, metadata={"v": 1}))
    key, want = compile_cached({"v": 1, "busy": False})

    def ids() -> list[int | str]:
        return [i.instance_id for i in discovery.matching("auth", want, key)]

    assert ids() == [1]
    await changes.register(spec("auth", 2, metadata={"v": 1}))
    assert ids() == [1, 2]
    await changes.set_status("auth", 1, busy=True)
    assert ids() == [2]
    await changes.run(Expire("auth", 2, seen_heartbeat=clock.now))
    assert ids() == []
    await changes.heartbeat("auth", 2)
    assert ids() == [2]
    await changes.register(spec("auth", 2, metadata={"v": 2}))
    assert ids() == []
    assert compile_cached({"busy": False, "v": 1})[0] == key  # key order does not matter


async def test_one_order_everywhere(clock: FakeClock) -> None:
    changes = new_changes(clock)
    discovery = Discovery(changes.view)
    for iid in ("b", 10, 2, "a", 1):
        await changes.register(spec("auth", iid))
    expected: list[int | str] = [1, 2, 10, "a", "b"]
    assert [i.instance_id for i in discovery.live("auth")] == expected
    everyone = compile_requirements(None)
    assert [i.instance_id for i in discovery.listing("auth", everyone)] == expected
    assert [i.instance_id for i in discovery.matching("auth", everyone)] == expected


async def test_live_counts_follow_every_change(clock: FakeClock) -> None:
    """has_live is O(1): the view counts live instances per service as it applies."""
    changes = new_changes(clock)
    discovery = Discovery(changes.view)
    await changes.register(spec("auth", 1))
    await changes.register(spec("auth", 2, status=Status.MAINTENANCE))
    assert changes.view.live_count("auth") == 1 and discovery.has_live("auth")
    await changes.set_status("auth", 2, Status.ACTIVE)
    await changes.set_status("auth", 1, busy=True)  # busy is still live
    assert changes.view.live_count("auth") == 2
    await changes.run(Expire("auth", 1, seen_heartbeat=clock.now))
    await changes.deregister("auth", 2)
    assert changes.view.live_count("auth") == 0 and not discovery.has_live("auth")
    assert discovery.live_services() == []
    await changes.heartbeat("auth", 1)  # revives it
    assert discovery.live_services() == ["auth"]


def test_the_view_counts_instances_as_it_applies() -> None:
    view = View()
    for iid in (1, 2, 3):
        apply(view, iid, plan(view, Register(spec("auth", iid)), 0.0))  # type: ignore[arg-type]
    apply(view, 4, plan(view, Register(spec("auth", 1, metadata={"v": 2})), 0.0))  # type: ignore[arg-type]
    assert view.count() == 3
    from jarvis_dns.registry import Deregister

    apply(view, 5, plan(view, Deregister("auth", 2), 0.0))  # type: ignore[arg-type]
    assert view.count() == 2 == len(list(view.all_instances()))
