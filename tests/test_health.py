"""Every liveness transition of the health monitor, driven by a hand-moved clock.

No sockets and no sleeps: commands go through a real ``Changes`` over a MemoryStore,
and HealthMonitor.tick / .update (the checks' notifier) are awaited directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from conftest import FakeClock, new_changes

from jarvis_dns.changes import Changes
from jarvis_dns.config import Config
from jarvis_dns.health import CheckResult, HealthMonitor, Target
from jarvis_dns.health.outcome import interpret_http
from jarvis_dns.health.preservation import MIN_FLEET
from jarvis_dns.health.targets import resolve_check
from jarvis_dns.models import Batch, Check, EventKind, Instance, InstanceSpec, Status
from jarvis_dns.registry import View
from jarvis_dns.store.memory import MemoryStore

SVC = "web"
TTL = 30.0


Clock = FakeClock


@dataclass
class World:
    clock: Clock
    changes: Changes
    monitor: HealthMonitor
    config: Config

    @property
    def view(self) -> View:
        return self.changes.view

    async def tick(self, advance: float = 0.0) -> None:
        self.clock.advance(advance)
        await self.monitor.tick(self.clock.now)

    def status(self, iid: int | str) -> Status:
        return self.view.get(SVC, iid).status

    def kinds(self, since: int = 0) -> list[tuple[EventKind, str]]:
        return [(e.kind, e.reason) for e in self.changes.events.since(since)]

    async def report(self, iid: int | str, result: CheckResult) -> None:
        await self.monitor.update(target(self.view.get(SVC, iid), self.config), result)


def target(inst: Instance, config: Config) -> Target:
    assert inst.check is not None
    check = resolve_check(inst.check, config)
    return Target(inst.service_type, inst.key, inst.host, inst.port, check)


async def make_world(
    changes: Changes | None = None, clock: Clock | None = None, **cfg: object
) -> World:
    clock = clock or Clock()
    config = Config(store="memory://", **cfg)  # type: ignore[arg-type]
    if changes is None:
        changes = new_changes(clock)
        await changes.load()
    return World(clock, changes, HealthMonitor(changes, config, clock=clock), config)


@pytest.fixture
async def world() -> World:
    return await make_world()


def spec(iid: int | str, **kw: object) -> InstanceSpec:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": 8000, "ttl_s": TTL, **kw}
    return InstanceSpec(service_type=SVC, instance_id=iid, **fields)  # type: ignore[arg-type]


CHECK = Check(interval_s=10, failures_before_dead=3, successes_before_active=2)
FAIL = interpret_http(500, b"boom")
PASS = interpret_http(200, b'{"status": "ok"}')


# -- TTL ------------------------------------------------------------------------


async def test_ttl_expired(world: World) -> None:
    await world.changes.register(spec(1))
    await world.tick(TTL - 0.01)
    assert world.status(1) is Status.ACTIVE
    await world.tick(0.01)
    assert world.status(1) is Status.DEAD
    event = world.changes.events.since(0)[-1]
    assert (event.kind, event.reason) == (EventKind.TTL_EXPIRED, "ttl expired")
    assert (event.old_status, event.new_status) == (Status.ACTIVE, Status.DEAD)


async def test_heartbeat_moves_the_deadline(world: World) -> None:
    await world.changes.register(spec(1))
    await world.tick(20)
    await world.changes.heartbeat(SVC, 1)
    await world.tick(20)
    assert world.status(1) is Status.ACTIVE
    await world.tick(10)
    assert world.status(1) is Status.DEAD


async def test_heartbeat_resumed_and_expires_again(world: World) -> None:
    await world.changes.register(spec(1))
    await world.tick(TTL)
    assert world.status(1) is Status.DEAD
    mark = world.view.index
    await world.tick(5)
    await world.changes.heartbeat(SVC, 1)
    assert world.status(1) is Status.ACTIVE
    assert world.kinds(mark) == [(EventKind.HEARTBEAT_RESUMED, "heartbeat resumed")]
    await world.tick(TTL)
    assert world.status(1) is Status.DEAD


async def test_per_instance_ttl(world: World) -> None:
    await world.changes.register(spec("short", ttl_s=3.0))
    await world.changes.register(spec("long", ttl_s=60.0))
    await world.tick(3)
    assert (world.status("short"), world.status("long")) == (Status.DEAD, Status.ACTIVE)


async def test_tick_cost_does_not_grow_with_healthy_instances(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10_000):
        await world.changes.register(spec(i))
    await world.tick(TTL - 1)
    for i in range(10_000):
        await world.changes.heartbeat(SVC, i)
    lookups = 0
    find = world.view.find

    def counting_find(service_type: str, instance_id: int | str) -> Instance | None:
        nonlocal lookups
        lookups += 1
        return find(service_type, instance_id)

    monkeypatch.setattr(world.view, "find", counting_find)
    for _ in range(3):  # quarter-second ticks up to the deadlines the registrations set
        await world.tick(0.25)
    assert lookups == 0  # nothing due, nothing looked at
    await world.tick(0.25)
    # Beats are not followed one by one: each deadline falls due once, its instance is
    # looked at once, and since it beat meanwhile it is only scheduled anew.
    assert lookups == 10_000
    for _ in range(int(TTL - 1) * 4 - 4):  # the rest of almost a whole TTL of ticks
        await world.tick(0.25)
    assert lookups == 10_000
    assert world.monitor.status()["ttl_tracked"] == 10_000
    assert len(world.changes.events) == 10_000  # the registrations; nothing expired


# -- active checks ---------------------------------------------------------------


async def test_check_failed_n_times_is_dead(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    await world.report(1, FAIL)
    await world.report(1, FAIL)
    assert world.status(1) is Status.ACTIVE
    assert world.view.get(SVC, 1).check_output == "HTTP 500: boom"
    mark = world.view.index
    await world.report(1, FAIL)
    assert world.status(1) is Status.DEAD
    assert world.kinds(mark) == [(EventKind.CHECK_FAILED, "HTTP 500: boom")]


async def test_check_passed_revives_after_successes_before_active(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    for _ in range(3):
        await world.report(1, FAIL)
    await world.report(1, PASS)
    assert world.status(1) is Status.DEAD  # successes_before_active is 2
    mark = world.view.index
    await world.report(1, PASS)
    assert world.status(1) is Status.ACTIVE
    assert world.kinds(mark) == [(EventKind.CHECK_PASSED, 'HTTP 200: {"status": "ok"}')]


async def test_a_pass_does_not_revive_an_instance_that_stopped_heartbeating(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    await world.tick(TTL)
    for _ in range(5):
        await world.report(1, PASS)
    assert world.status(1) is Status.DEAD  # its TTL is still expired


async def test_flapping_never_crosses_a_threshold(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    for _ in range(10):
        await world.report(1, FAIL)
        await world.report(1, FAIL)
        await world.report(1, PASS)
    assert world.status(1) is Status.ACTIVE
    for _ in range(3):
        await world.report(1, FAIL)
    assert world.status(1) is Status.DEAD
    for _ in range(10):
        await world.report(1, PASS)
        await world.report(1, FAIL)
    assert world.status(1) is Status.DEAD
    assert [k for k, _ in world.kinds()].count(EventKind.CHECK_FAILED) == 1


async def test_busy_and_idle_from_the_health_body(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    mark = world.view.index
    await world.report(1, interpret_http(200, b'{"busy": true, "metrics": {"queue": 7}}'))
    inst = world.view.get(SVC, 1)
    assert (inst.busy, inst.metrics, inst.status) == (True, {"queue": 7}, Status.ACTIVE)
    await world.report(1, interpret_http(200, b'{"busy": false}'))
    assert world.view.get(SVC, 1).busy is False
    assert [k for k, _ in world.kinds(mark)] == [EventKind.BUSY, EventKind.IDLE]


async def test_one_probe_is_one_batch_with_one_index(world: World) -> None:
    await world.changes.register(spec(1, check=Check(interval_s=10, failures_before_dead=1)))
    await world.report(1, FAIL)
    mark = world.view.index
    await world.report(1, interpret_http(200, b'{"busy": true}'))  # revives, and is busy
    events = world.changes.events.since(mark)
    assert [(e.kind, e.new_status, e.index) for e in events] == [
        (EventKind.CHECK_PASSED, Status.ACTIVE, mark + 1),
        (EventKind.BUSY, Status.ACTIVE, mark + 1),
    ]
    assert world.view.index == world.view.get(SVC, 1).modify_index == mark + 1


async def test_429_means_busy_not_dead(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    for _ in range(5):
        await world.report(1, interpret_http(429, b""))
    inst = world.view.get(SVC, 1)
    assert (inst.status, inst.busy) == (Status.ACTIVE, True)
    await world.report(1, interpret_http(200, b"ok"))  # no busy key: the 429 is over
    assert world.view.get(SVC, 1).busy is False


async def test_a_plain_200_leaves_heartbeat_busy_alone(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    await world.changes.heartbeat(SVC, 1, busy=True)
    await world.report(1, interpret_http(200, b"ok"))
    assert world.view.get(SVC, 1).busy is True


async def test_health_status_field_fails(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    for _ in range(3):
        await world.report(1, interpret_http(200, b'{"status": "degraded"}'))
    assert world.status(1) is Status.DEAD


async def test_check_results_for_vanished_instances_are_ignored(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    gone = target(world.view.get(SVC, 1), world.config)
    await world.changes.deregister(SVC, 1)
    await world.monitor.update(gone, FAIL)  # no NotFound escapes


# -- cleanup -------------------------------------------------------------------


async def test_dead_for_deregister_after_is_removed(world: World) -> None:
    await world.changes.register(spec(1))
    await world.tick(TTL)
    await world.tick(600 - 0.01)
    assert world.status(1) is Status.DEAD
    mark = world.view.index
    await world.tick(0.01)
    assert world.view.find(SVC, 1) is None
    event = world.changes.events.since(mark)[0]
    assert (event.kind, event.reason) == (EventKind.REMOVED, "dead for 600s")
    assert (event.old_status, event.new_status) == (Status.DEAD, None)


async def test_per_instance_and_server_deregister_after() -> None:
    world = await make_world(deregister_after_s=100.0)
    await world.changes.register(spec("server-default"))
    await world.changes.register(spec("own", deregister_after_s=10.0))
    await world.tick(TTL)
    await world.tick(10)
    assert world.view.find(SVC, "own") is None
    assert world.view.find(SVC, "server-default") is not None
    await world.tick(90)
    assert world.view.find(SVC, "server-default") is None


async def test_a_heartbeat_before_cleanup_saves_the_instance(world: World) -> None:
    await world.changes.register(spec(1))
    await world.tick(TTL)
    await world.tick(300)
    await world.changes.heartbeat(SVC, 1)
    for _ in range(30):  # well past the removal it was due for
        await world.tick(20)
        await world.changes.heartbeat(SVC, 1)
    assert world.status(1) is Status.ACTIVE


async def test_check_dead_instances_are_cleaned_up_too(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK, ttl_s=10_000.0))
    for _ in range(3):
        await world.report(1, FAIL)
    await world.tick(600)
    assert world.view.find(SVC, 1) is None


# -- maintenance -----------------------------------------------------------------


async def test_maintenance_is_neither_expired_nor_removed_nor_checked(world: World) -> None:
    await world.changes.register(spec(1, status=Status.MAINTENANCE, check=CHECK))
    await world.tick(TTL * 100)
    await world.report(1, FAIL)
    await world.report(1, FAIL)
    await world.report(1, FAIL)
    inst = world.view.get(SVC, 1)
    assert (inst.status, inst.check_output) == (Status.MAINTENANCE, "")


async def test_leaving_maintenance_starts_a_fresh_ttl(world: World) -> None:
    await world.changes.register(spec(1))
    await world.tick(20)
    await world.changes.set_status(SVC, 1, status=Status.MAINTENANCE)
    await world.tick(100)
    assert world.status(1) is Status.MAINTENANCE
    await world.changes.set_status(SVC, 1, status=Status.ACTIVE)
    await world.tick(TTL - 1)
    assert world.status(1) is Status.ACTIVE
    await world.tick(1)
    assert world.status(1) is Status.DEAD


# -- self-preservation -------------------------------------------------------------

FLEET = 20


async def fleet_world(threshold: float = 0.5) -> World:
    world = await make_world(self_preservation_threshold=threshold)
    for i in range(FLEET):
        await world.changes.register(spec(i, check=CHECK))
    return world


async def heartbeat(world: World, ids: range | list[int]) -> None:
    for i in ids:
        await world.changes.heartbeat(SVC, i)


def held(world: World) -> dict[str, object]:
    state = world.monitor.status()["self_preservation"]
    assert isinstance(state, dict)
    return state


async def test_self_preservation_holds_a_mass_expiry(caplog: pytest.LogCaptureFixture) -> None:
    world = await fleet_world()
    await world.tick(TTL - 1)
    await heartbeat(world, range(15, FLEET))  # 15 of 20 go silent: 75% > 50%
    with caplog.at_level(logging.WARNING, logger="jarvis_dns.health"):
        await world.tick(1)
    assert all(world.status(i) is Status.ACTIVE for i in range(FLEET))
    state = held(world)
    assert state["active"] is True and state["since"] == world.clock.now
    assert state["held"] == 15 and "15 of 20" in str(state["reason"])
    assert "SELF-PRESERVATION ENGAGED" in caplog.text
    await world.tick(TTL * 3)  # it keeps holding, and keeps nothing else from expiring
    assert all(world.status(i) is Status.ACTIVE for i in range(15))


async def test_active_check_failures_still_count_while_holding() -> None:
    world = await fleet_world()
    await world.tick(TTL)
    assert held(world)["active"] is True
    for _ in range(3):
        await world.report(0, FAIL)
    assert world.status(0) is Status.DEAD


async def test_self_preservation_releases_when_heartbeats_recover() -> None:
    world = await fleet_world()
    await world.tick(TTL - 1)
    await heartbeat(world, range(15, FLEET))
    await world.tick(1)
    assert held(world)["active"] is True
    await heartbeat(world, range(12))  # 3 of 20 still silent: an ordinary minority
    await world.tick(0.25)
    assert held(world)["active"] is False
    assert [world.status(i) for i in range(12, 15)] == [Status.DEAD] * 3
    assert all(world.status(i) is Status.ACTIVE for i in [*range(12), *range(15, FLEET)])


async def test_self_preservation_releases_when_all_recover() -> None:
    world = await fleet_world()
    await world.tick(TTL)
    assert held(world)["held"] == FLEET
    await heartbeat(world, range(FLEET))
    await world.tick(0.25)
    assert held(world) | {"since": None} == {
        "active": False,
        "since": None,
        "reason": "",
        "held": 0,
        "threshold": 0.5,
    }
    assert all(world.status(i) is Status.ACTIVE for i in range(FLEET))


async def test_operator_clears_self_preservation() -> None:
    world = await fleet_world()
    await world.tick(TTL - 1)
    await heartbeat(world, range(15, FLEET))
    await world.tick(1)
    await world.monitor.clear_self_preservation()
    assert held(world)["active"] is False
    assert [world.status(i) for i in range(15)] == [Status.DEAD] * 15
    await world.tick(TTL - 1)  # the cleared mass does not re-trigger it for the next expiry
    assert held(world)["active"] is False
    assert [world.status(i) for i in range(15, FLEET)] == [Status.DEAD] * 5


async def test_expiries_accumulate_within_one_ttl_window() -> None:
    world = await fleet_world()
    await world.tick(TTL - 10)
    await heartbeat(world, range(8, FLEET))
    await world.tick(10)  # 8 of 20 expire: 40%
    assert [world.status(i) for i in range(8)] == [Status.DEAD] * 8
    await world.tick(TTL - 15)
    await heartbeat(world, range(12, FLEET))
    await world.tick(5)  # 4 more, 20 s after the first 8: 12 of 20 = 60%
    assert held(world)["active"] is True
    assert [world.status(i) for i in range(8, 12)] == [Status.ACTIVE] * 4


async def test_threshold_zero_disables_self_preservation() -> None:
    world = await fleet_world(threshold=0.0)
    await world.tick(TTL)
    assert held(world)["active"] is False
    assert all(world.status(i) is Status.DEAD for i in range(FLEET))


async def test_small_fleets_expire_normally(world: World) -> None:
    for i in range(MIN_FLEET - 1):
        await world.changes.register(spec(i))
    await world.tick(TTL)
    assert held(world)["active"] is False
    assert all(world.status(i) is Status.DEAD for i in range(MIN_FLEET - 1))


async def test_a_held_instance_that_deregisters_leaves_the_hold() -> None:
    world = await fleet_world()
    await world.tick(TTL)
    for i in range(FLEET):
        await world.changes.deregister(SVC, i)
    await world.tick(0.25)
    assert held(world)["active"] is False and held(world)["held"] == 0


# -- restart grace -------------------------------------------------------------------


async def restored(clock: Clock, status: Status, age: float) -> Changes:
    """A Changes loaded from a store that kept one instance from long ago."""
    old = clock.now - age
    inst = Instance(
        service_type=SVC,
        instance_id=1,
        host="127.0.0.1",
        port=8000,
        metadata={},
        weight=100,
        busy=False,
        status=status,
        ttl_s=TTL,
        check=None,
        deregister_after_s=None,
        registered_at=old,
        last_heartbeat=old,
        status_since=old,
    )
    store = MemoryStore()
    assert await store.commit(Batch(puts=[inst])) == 1
    changes = new_changes(clock, store)
    await changes.load()
    return changes


async def test_restored_instances_get_one_ttl_of_grace() -> None:
    clock = Clock()
    world = await make_world(await restored(clock, Status.ACTIVE, age=3600), clock)
    world.monitor.load(clock.now)
    await world.tick(0)
    await world.tick(TTL - 0.25)
    assert world.status(1) is Status.ACTIVE
    await world.tick(0.25)
    assert world.status(1) is Status.DEAD


async def test_a_heartbeat_during_grace_keeps_a_restored_instance() -> None:
    clock = Clock()
    world = await make_world(await restored(clock, Status.ACTIVE, age=3600), clock)
    world.monitor.load(clock.now)
    await world.tick(TTL - 1)
    await world.changes.heartbeat(SVC, 1)
    await world.tick(TTL - 1)
    assert world.status(1) is Status.ACTIVE


async def test_restored_dead_instances_get_grace_before_removal() -> None:
    clock = Clock()
    world = await make_world(await restored(clock, Status.DEAD, age=3600), clock)
    world.monitor.load(clock.now)
    await world.tick(1)
    assert world.status(1) is Status.DEAD  # long overdue for removal, but just restored
    await world.tick(TTL)
    assert world.view.find(SVC, 1) is None


async def test_status_shape(world: World) -> None:
    await world.changes.register(spec(1))
    status = world.monitor.status()
    assert status["ttl_tracked"] == 1 and status["dead_tracked"] == 0
    assert status["running"] is False and status["active_checks"] is True
    assert set(held(world)) == {"active", "since", "reason", "held", "threshold"}


async def test_a_heartbeat_does_not_revive_an_instance_whose_check_fails(world: World) -> None:
    await world.changes.register(spec(1, check=CHECK))
    for _ in range(3):
        await world.report(1, FAIL)
    assert world.view.get(SVC, 1).check_failing is True  # the plan's resume rule reads it
    mark = world.view.index
    await world.changes.heartbeat(SVC, 1)
    assert world.status(1) is Status.DEAD
    assert world.kinds(mark) == []  # vetoed: no resume/fail flapping in the event log
    await world.report(1, PASS)
    await world.report(1, PASS)  # the check recovers: active again, with a fresh TTL
    assert world.status(1) is Status.ACTIVE
    assert world.view.get(SVC, 1).check_failing is False
    await world.changes.heartbeat(SVC, 1)
    assert world.status(1) is Status.ACTIVE
