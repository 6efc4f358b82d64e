"""Every liveness transition of the health monitor, driven by a hand-moved clock.

No sockets and no sleeps: registry commands and HealthMonitor.tick / .update (the
checks' notifier) are called directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from conftest import FakeClock

from jarvis_dns.config import Config
from jarvis_dns.health import CheckResult, HealthMonitor, Target
from jarvis_dns.health.outcome import interpret_http
from jarvis_dns.health.preservation import MIN_FLEET
from jarvis_dns.health.targets import resolve_check
from jarvis_dns.models import Check, EventKind, Instance, InstanceSpec, Snapshot, Status
from jarvis_dns.registry import Registry

SVC = "web"
TTL = 30.0


Clock = FakeClock


@dataclass
class World:
    clock: Clock
    registry: Registry
    monitor: HealthMonitor
    config: Config

    def tick(self, advance: float = 0.0) -> None:
        self.clock.advance(advance)
        self.monitor.tick(self.clock.now)

    def status(self, iid: int | str) -> Status:
        return self.registry.get(SVC, iid).status

    def kinds(self, since: int = 0) -> list[tuple[EventKind, str]]:
        return [(e.kind, e.reason) for e in self.registry.events_since(since)]

    def report(self, iid: int | str, result: CheckResult) -> None:
        self.monitor.update(target(self.registry.get(SVC, iid), self.config), result)


def target(inst: Instance, config: Config) -> Target:
    assert inst.check is not None
    check = resolve_check(inst.check, config)
    return Target(inst.service_type, inst.key, inst.host, inst.port, check)


def make_world(
    registry: Registry | None = None, clock: Clock | None = None, **cfg: object
) -> World:
    clock = clock or Clock()
    config = Config(store="memory://", **cfg)  # type: ignore[arg-type]
    registry = registry or Registry(clock)
    return World(clock, registry, HealthMonitor(registry, config, clock=clock), config)


@pytest.fixture
def world() -> World:
    return make_world()


def spec(iid: int | str, **kw: object) -> InstanceSpec:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": 8000, "ttl_s": TTL, **kw}
    return InstanceSpec(service_type=SVC, instance_id=iid, **fields)  # type: ignore[arg-type]


CHECK = Check(interval_s=10, failures_before_dead=3, successes_before_active=2)
FAIL = interpret_http(500, b"boom")
PASS = interpret_http(200, b'{"status": "ok"}')


# -- TTL ------------------------------------------------------------------------


def test_ttl_expired(world: World) -> None:
    world.registry.register(spec(1))
    world.tick(TTL - 0.01)
    assert world.status(1) is Status.ACTIVE
    world.tick(0.01)
    assert world.status(1) is Status.DEAD
    event = world.registry.events_since(0)[-1]
    assert (event.kind, event.reason) == (EventKind.TTL_EXPIRED, "ttl expired")
    assert (event.old_status, event.new_status) == (Status.ACTIVE, Status.DEAD)


def test_heartbeat_moves_the_deadline(world: World) -> None:
    world.registry.register(spec(1))
    world.tick(20)
    world.registry.heartbeat(SVC, 1)
    world.tick(20)
    assert world.status(1) is Status.ACTIVE
    world.tick(10)
    assert world.status(1) is Status.DEAD


def test_heartbeat_resumed_and_expires_again(world: World) -> None:
    world.registry.register(spec(1))
    world.tick(TTL)
    assert world.status(1) is Status.DEAD
    mark = world.registry.index
    world.tick(5)
    world.registry.heartbeat(SVC, 1)
    assert world.status(1) is Status.ACTIVE
    assert world.kinds(mark) == [(EventKind.HEARTBEAT_RESUMED, "heartbeat resumed")]
    world.tick(TTL)
    assert world.status(1) is Status.DEAD


def test_per_instance_ttl(world: World) -> None:
    world.registry.register(spec("short", ttl_s=3.0))
    world.registry.register(spec("long", ttl_s=60.0))
    world.tick(3)
    assert (world.status("short"), world.status("long")) == (Status.DEAD, Status.ACTIVE)


def test_tick_cost_does_not_grow_with_healthy_instances(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10_000):
        world.registry.register(spec(i))
    world.tick(TTL - 1)
    for i in range(10_000):
        world.registry.heartbeat(SVC, i)
    lookups = 0
    find = world.registry.find

    def counting_find(service_type: str, instance_id: int | str) -> Instance | None:
        nonlocal lookups
        lookups += 1
        return find(service_type, instance_id)

    monkeypatch.setattr(world.registry, "find", counting_find)
    for _ in range(int(TTL - 1) * 4):  # almost a whole TTL of quarter-second ticks
        world.tick(0.25)
    assert lookups == 0  # nothing due, nothing looked at
    assert world.monitor.status()["ttl_tracked"] == 10_000


# -- active checks ---------------------------------------------------------------


def test_check_failed_n_times_is_dead(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    world.report(1, FAIL)
    world.report(1, FAIL)
    assert world.status(1) is Status.ACTIVE
    assert world.registry.get(SVC, 1).check_output == "HTTP 500: boom"
    mark = world.registry.index
    world.report(1, FAIL)
    assert world.status(1) is Status.DEAD
    assert world.kinds(mark) == [(EventKind.CHECK_FAILED, "HTTP 500: boom")]


def test_check_passed_revives_after_successes_before_active(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    for _ in range(3):
        world.report(1, FAIL)
    world.report(1, PASS)
    assert world.status(1) is Status.DEAD  # successes_before_active is 2
    mark = world.registry.index
    world.report(1, PASS)
    assert world.status(1) is Status.ACTIVE
    assert world.kinds(mark) == [(EventKind.CHECK_PASSED, 'HTTP 200: {"status": "ok"}')]


def test_a_pass_does_not_revive_an_instance_that_stopped_heartbeating(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    world.tick(TTL)
    for _ in range(5):
        world.report(1, PASS)
    assert world.status(1) is Status.DEAD  # its TTL is still expired


def test_flapping_never_crosses_a_threshold(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    for _ in range(10):
        world.report(1, FAIL)
        world.report(1, FAIL)
        world.report(1, PASS)
    assert world.status(1) is Status.ACTIVE
    for _ in range(3):
        world.report(1, FAIL)
    assert world.status(1) is Status.DEAD
    for _ in range(10):
        world.report(1, PASS)
        world.report(1, FAIL)
    assert world.status(1) is Status.DEAD
    assert [k for k, _ in world.kinds()].count(EventKind.CHECK_FAILED) == 1


def test_busy_and_idle_from_the_health_body(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    mark = world.registry.index
    world.report(1, interpret_http(200, b'{"busy": true, "metrics": {"queue": 7}}'))
    inst = world.registry.get(SVC, 1)
    assert (inst.busy, inst.metrics, inst.status) == (True, {"queue": 7}, Status.ACTIVE)
    world.report(1, interpret_http(200, b'{"busy": false}'))
    assert world.registry.get(SVC, 1).busy is False
    assert [k for k, _ in world.kinds(mark)] == [EventKind.BUSY, EventKind.IDLE]


def test_429_means_busy_not_dead(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    for _ in range(5):
        world.report(1, interpret_http(429, b""))
    inst = world.registry.get(SVC, 1)
    assert (inst.status, inst.busy) == (Status.ACTIVE, True)
    world.report(1, interpret_http(200, b"ok"))  # no busy key: the 429 is over
    assert world.registry.get(SVC, 1).busy is False


def test_a_plain_200_leaves_heartbeat_busy_alone(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    world.registry.heartbeat(SVC, 1, busy=True)
    world.report(1, interpret_http(200, b"ok"))
    assert world.registry.get(SVC, 1).busy is True


def test_health_status_field_fails(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    for _ in range(3):
        world.report(1, interpret_http(200, b'{"status": "degraded"}'))
    assert world.status(1) is Status.DEAD


def test_check_results_for_vanished_instances_are_ignored(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    gone = target(world.registry.get(SVC, 1), world.config)
    world.registry.deregister(SVC, 1)
    world.monitor.update(gone, FAIL)  # no NotFound escapes


# -- cleanup -------------------------------------------------------------------


def test_dead_for_deregister_after_is_removed(world: World) -> None:
    world.registry.register(spec(1))
    world.tick(TTL)
    world.tick(600 - 0.01)
    assert world.status(1) is Status.DEAD
    mark = world.registry.index
    world.tick(0.01)
    assert world.registry.find(SVC, 1) is None
    event = world.registry.events_since(mark)[0]
    assert (event.kind, event.reason) == (EventKind.REMOVED, "dead for 600s")
    assert (event.old_status, event.new_status) == (Status.DEAD, None)


def test_per_instance_and_server_deregister_after() -> None:
    world = make_world(deregister_after_s=100.0)
    world.registry.register(spec("server-default"))
    world.registry.register(spec("own", deregister_after_s=10.0))
    world.tick(TTL)
    world.tick(10)
    assert world.registry.find(SVC, "own") is None
    assert world.registry.find(SVC, "server-default") is not None
    world.tick(90)
    assert world.registry.find(SVC, "server-default") is None


def test_a_heartbeat_before_cleanup_saves_the_instance(world: World) -> None:
    world.registry.register(spec(1))
    world.tick(TTL)
    world.tick(300)
    world.registry.heartbeat(SVC, 1)
    for _ in range(30):  # well past the removal it was due for
        world.tick(20)
        world.registry.heartbeat(SVC, 1)
    assert world.status(1) is Status.ACTIVE


def test_check_dead_instances_are_cleaned_up_too(world: World) -> None:
    world.registry.register(spec(1, check=CHECK, ttl_s=10_000.0))
    for _ in range(3):
        world.report(1, FAIL)
    world.tick(600)
    assert world.registry.find(SVC, 1) is None


# -- maintenance -----------------------------------------------------------------


def test_maintenance_is_neither_expired_nor_removed_nor_checked(world: World) -> None:
    world.registry.register(spec(1, status=Status.MAINTENANCE, check=CHECK))
    world.tick(TTL * 100)
    world.report(1, FAIL)
    world.report(1, FAIL)
    world.report(1, FAIL)
    inst = world.registry.get(SVC, 1)
    assert (inst.status, inst.check_output) == (Status.MAINTENANCE, "")


def test_leaving_maintenance_starts_a_fresh_ttl(world: World) -> None:
    world.registry.register(spec(1))
    world.tick(20)
    world.registry.set_status(SVC, 1, status=Status.MAINTENANCE)
    world.tick(100)
    assert world.status(1) is Status.MAINTENANCE
    world.registry.set_status(SVC, 1, status=Status.ACTIVE)
    world.tick(TTL - 1)
    assert world.status(1) is Status.ACTIVE
    world.tick(1)
    assert world.status(1) is Status.DEAD


# -- self-preservation -------------------------------------------------------------

FLEET = 20


def fleet_world(threshold: float = 0.5) -> World:
    world = make_world(self_preservation_threshold=threshold)
    for i in range(FLEET):
        world.registry.register(spec(i, check=CHECK))
    return world


def heartbeat(world: World, ids: range | list[int]) -> None:
    for i in ids:
        world.registry.heartbeat(SVC, i)


def held(world: World) -> dict[str, object]:
    state = world.monitor.status()["self_preservation"]
    assert isinstance(state, dict)
    return state


def test_self_preservation_holds_a_mass_expiry(caplog: pytest.LogCaptureFixture) -> None:
    world = fleet_world()
    world.tick(TTL - 1)
    heartbeat(world, range(15, FLEET))  # 15 of 20 go silent: 75% > 50%
    with caplog.at_level(logging.WARNING, logger="jarvis_dns.health"):
        world.tick(1)
    assert all(world.status(i) is Status.ACTIVE for i in range(FLEET))
    state = held(world)
    assert state["active"] is True and state["since"] == world.clock.now
    assert state["held"] == 15 and "15 of 20" in str(state["reason"])
    assert "SELF-PRESERVATION ENGAGED" in caplog.text
    world.tick(TTL * 3)  # it keeps holding, and keeps nothing else from expiring
    assert all(world.status(i) is Status.ACTIVE for i in range(15))


def test_active_check_failures_still_count_while_holding() -> None:
    world = fleet_world()
    world.tick(TTL)
    assert held(world)["active"] is True
    for _ in range(3):
        world.report(0, FAIL)
    assert world.status(0) is Status.DEAD


def test_self_preservation_releases_when_heartbeats_recover() -> None:
    world = fleet_world()
    world.tick(TTL - 1)
    heartbeat(world, range(15, FLEET))
    world.tick(1)
    assert held(world)["active"] is True
    heartbeat(world, range(12))  # 3 of 20 still silent: an ordinary minority
    world.tick(0.25)
    assert held(world)["active"] is False
    assert [world.status(i) for i in range(12, 15)] == [Status.DEAD] * 3
    assert all(world.status(i) is Status.ACTIVE for i in [*range(12), *range(15, FLEET)])


def test_self_preservation_releases_when_all_recover() -> None:
    world = fleet_world()
    world.tick(TTL)
    assert held(world)["held"] == FLEET
    heartbeat(world, range(FLEET))
    world.tick(0.25)
    assert held(world) | {"since": None} == {
        "active": False,
        "since": None,
        "reason": "",
        "held": 0,
        "threshold": 0.5,
    }
    assert all(world.status(i) is Status.ACTIVE for i in range(FLEET))


def test_operator_clears_self_preservation() -> None:
    world = fleet_world()
    world.tick(TTL - 1)
    heartbeat(world, range(15, FLEET))
    world.tick(1)
    world.monitor.clear_self_preservation()
    assert held(world)["active"] is False
    assert [world.status(i) for i in range(15)] == [Status.DEAD] * 15
    world.tick(TTL - 1)  # the cleared mass does not re-trigger it for the next expiry
    assert held(world)["active"] is False
    assert [world.status(i) for i in range(15, FLEET)] == [Status.DEAD] * 5


def test_expiries_accumulate_within_one_ttl_window() -> None:
    world = fleet_world()
    world.tick(TTL - 10)
    heartbeat(world, range(8, FLEET))
    world.tick(10)  # 8 of 20 expire: 40%
    assert [world.status(i) for i in range(8)] == [Status.DEAD] * 8
    world.tick(TTL - 15)
    heartbeat(world, range(12, FLEET))
    world.tick(5)  # 4 more, 20 s after the first 8: 12 of 20 = 60%
    assert held(world)["active"] is True
    assert [world.status(i) for i in range(8, 12)] == [Status.ACTIVE] * 4


def test_threshold_zero_disables_self_preservation() -> None:
    world = fleet_world(threshold=0.0)
    world.tick(TTL)
    assert held(world)["active"] is False
    assert all(world.status(i) is Status.DEAD for i in range(FLEET))


def test_small_fleets_expire_normally(world: World) -> None:
    for i in range(MIN_FLEET - 1):
        world.registry.register(spec(i))
    world.tick(TTL)
    assert held(world)["active"] is False
    assert all(world.status(i) is Status.DEAD for i in range(MIN_FLEET - 1))


def test_a_held_instance_that_deregisters_leaves_the_hold() -> None:
    world = fleet_world()
    world.tick(TTL)
    for i in range(FLEET):
        world.registry.deregister(SVC, i)
    world.tick(0.25)
    assert held(world)["active"] is False and held(world)["held"] == 0


# -- restart grace -------------------------------------------------------------------


def restored(clock: Clock, status: Status, age: float) -> Registry:
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
        create_index=1,
        modify_index=1,
    )
    registry = Registry(clock)
    registry.restore(Snapshot(instances=[inst], index=1))
    return registry


def test_restored_instances_get_one_ttl_of_grace() -> None:
    clock = Clock()
    world = make_world(restored(clock, Status.ACTIVE, age=3600), clock)
    world.monitor.load(clock.now)
    world.tick(0)
    world.tick(TTL - 0.25)
    assert world.status(1) is Status.ACTIVE
    world.tick(0.25)
    assert world.status(1) is Status.DEAD


def test_a_heartbeat_during_grace_keeps_a_restored_instance() -> None:
    clock = Clock()
    world = make_world(restored(clock, Status.ACTIVE, age=3600), clock)
    world.monitor.load(clock.now)
    world.tick(TTL - 1)
    world.registry.heartbeat(SVC, 1)
    world.tick(TTL - 1)
    assert world.status(1) is Status.ACTIVE


def test_restored_dead_instances_get_grace_before_removal() -> None:
    clock = Clock()
    world = make_world(restored(clock, Status.DEAD, age=3600), clock)
    world.monitor.load(clock.now)
    world.tick(1)
    assert world.status(1) is Status.DEAD  # long overdue for removal, but just restored
    world.tick(TTL)
    assert world.registry.find(SVC, 1) is None


def test_status_shape(world: World) -> None:
    world.registry.register(spec(1))
    status = world.monitor.status()
    assert status["ttl_tracked"] == 1 and status["dead_tracked"] == 0
    assert status["running"] is False and status["active_checks"] is True
    assert set(held(world)) == {"active", "since", "reason", "held", "threshold"}


def test_a_heartbeat_does_not_revive_an_instance_whose_check_fails(world: World) -> None:
    world.registry.register(spec(1, check=CHECK))
    for _ in range(3):
        world.report(1, FAIL)
    mark = world.registry.index
    world.registry.heartbeat(SVC, 1)
    assert world.status(1) is Status.DEAD
    assert world.kinds(mark) == []  # vetoed: no resume/fail flapping in the event log
    world.report(1, PASS)
    world.report(1, PASS)  # the check recovers: active again, with a fresh TTL
    assert world.status(1) is Status.ACTIVE
    world.registry.heartbeat(SVC, 1)
    assert world.status(1) is Status.ACTIVE
