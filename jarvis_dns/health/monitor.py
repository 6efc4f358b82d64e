"""HealthMonitor: TTL expiry, active checks, cleanup of the dead, self-preservation.

It changes state only through commands given to ``changes.Changes`` and learns of
every change from its events, so its own bookkeeping is O(1) per change and its tick
costs only what falls due. Heartbeats are not followed one by one: when an instance's
TTL deadline falls due, the tick looks at its last heartbeat and, if one came since,
simply schedules the new deadline.

Active checks are opt-in per instance: only an instance registered with a `check` is
probed (and only while `config.active_checks` is on). Every instance has a TTL.

In a cluster (a store shared through etcd) the same monitor runs on every node, with
three differences: a node probes only the instances rendezvous hashing gives it
(cluster.owner); TTLs are etcd leases, so expiry is etcd's decision, which arrives as
lease expiries (``LeaseExpiries``) rather than from the timer wheel; and only the
elected leader turns those into "ttl expired" events, holds them under
self-preservation and removes the long dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

import aiohttp

from jarvis_dns.changes import Changes
from jarvis_dns.cluster import LeaseExpiries, Nodes, Solo
from jarvis_dns.config import Config
from jarvis_dns.errors import NotFound, StoreError
from jarvis_dns.health.checks import (
    DenyingResolver,
    HttpCheck,
    PeriodicCheck,
    Target,
    TcpCheck,
)
from jarvis_dns.health.limiter import Limiter
from jarvis_dns.health.outcome import CheckResult, Streak
from jarvis_dns.health.preservation import SelfPreservation
from jarvis_dns.health.targets import deregister_after, resolve_check
from jarvis_dns.health.wheel import TimerWheel
from jarvis_dns.metrics import Metrics
from jarvis_dns.models import Event, Instance, Status
from jarvis_dns.registry import Command, Expire, Observe, Remove

log = logging.getLogger("jarvis_dns.health")

Key = tuple[str, str]
SessionFactory = Callable[[], aiohttp.ClientSession]
# Quarter-second buckets: an expiry lands at most 250 ms late (ttl_s=3 is gone well
# inside 4 s), and four ticks a second over empty buckets cost nothing.
TICK_S = 0.25
NEVER = float("-inf")


class HealthMonitor:
    def __init__(
        self,
        changes: Changes,
        config: Config,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        session_factory: SessionFactory | None = None,
        nodes: Nodes | None = None,
        leases: LeaseExpiries | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._changes = changes
        self._metrics = metrics or Metrics()
        self._view = changes.view
        self._nodes: Nodes = nodes or Solo()
        # A cluster's TTLs are etcd leases: expiries come from there, not from the wheel.
        self._leases = leases
        self._expired: set[Key] = set()  # lease expiries waiting for the leader's tick
        self._was_leading = False
        self._config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._session_factory = session_factory or self._default_session
        self._ttl: TimerWheel[Key] = TimerWheel(TICK_S)
        self._cleanup: TimerWheel[Key] = TimerWheel(TICK_S)
        self._preservation: SelfPreservation[Key] = SelfPreservation(
            config.self_preservation_threshold
        )
        self._streaks: dict[Key, Streak] = {}
        self._checks: dict[Key, PeriodicCheck] = {}
        self._grace_from = NEVER  # restart time; deadlines never fall before it + ttl
        self._limiter: Limiter | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._expiries: asyncio.Task[None] | None = None
        self._running = False  # checks run only between start() and stop()
        changes.subscribe(self._on_events)
        self._report(self._metrics)

    # -- lifecycle -------------------------------------------------------------

    def load(self, now: float) -> None:
        """Track everything already in the registry, with one TTL of restart grace."""
        self._grace_from = now
        for inst in list(self._view.all_instances()):
            self._track(inst)

    async def start(self) -> None:
        self._limiter = Limiter(self._config.checks_in_flight, self._metrics)
        if self._config.active_checks:
            self._session = self._session_factory()
        self.load(self._clock())
        self._running = True
        for inst in list(self._view.all_instances()):
            self._sync_check(inst)
        self._ticker = asyncio.create_task(self._tick_loop(), name="health tick")
        if self._leases is not None:
            self._expiries = asyncio.create_task(self._take_expiries(), name="lease expiries")
        self._nodes.on_change(self._on_cluster_change)

    async def stop(self) -> None:
        self._running = False
        tasks = [t for t in (self._ticker, self._expiries, *self._stop_all_checks()) if t]
        self._ticker = self._expiries = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _stop_all_checks(self) -> list[asyncio.Task[None] | None]:
        tasks = [check.cancel() for check in self._checks.values()]
        self._checks.clear()
        return tasks

    def _default_session(self) -> aiohttp.ClientSession:
        # A fresh connection per probe, as Consul's checks do (DisableKeepAlives): a check
        # must see whether the instance still accepts connections, and at a 60 s interval
        # pooled sockets would only sit idle. Timeouts are per probe (asyncio.timeout).
        connector = aiohttp.TCPConnector(
            force_close=True,
            limit=self._config.checks_in_flight,
            resolver=DenyingResolver(self._config.check_deny),
        )
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout())

    async def _tick_loop(self) -> None:
        while True:
            try:
                await self.tick(self._clock())
            except Exception:  # the monitor must outlive any one bad tick
                log.exception("health tick failed")
            # Wake just after the next bucket boundary, where deadlines fall due.
            await asyncio.sleep(TICK_S - self._clock() % TICK_S + 0.005)

    # -- the tick --------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """Expire what missed its TTL (unless self-preservation holds), remove the long dead."""
        if self._leases is not None:
            await self._tick_cluster(now)
            return
        self._release_beaten(now)
        due = [(key, ttl) for key in self._ttl.pop_due(now) if (ttl := self._overdue(key, now))]
        others_live = len(self._ttl)
        commands: list[Command] = [
            self._expiry(key) for key in self._preservation.admit(now, due, others_live)
        ]
        commands += [c for key in self._cleanup.pop_due(now) if (c := self._removal(key, now))]
        await self._run_all(commands)

    async def _tick_cluster(self, now: float) -> None:
        """The leader's tick: lease expiries through self-preservation, and cleanup.
        Other nodes keep their cleanup schedule, so a new leader has it at once."""
        assert self._leases is not None
        if not self._nodes.leading:
            for key in self._cleanup.pop_due(now):
                self._cleanup.schedule(key, now + 1.0)
            return
        if not self._was_leading:  # just elected: expiries seen while another node led
            active = [(i.service_type, i.key) for i in self._view.all_instances() if i.live]
            self._expired.update(self._leases.without_lease(active))
        self._was_leading = True
        for key in list(self._preservation.held):  # leased again: it came back
            if not self._leases.without_lease([key]):
                self._preservation.discard(key)
        due = [(key, inst.ttl_s) for key in self._expired if (inst := self._live(key))]
        self._expired.clear()
        live = sum(self._view.live_count(svc) for svc in self._view.service_types())
        others_live = max(0, live - len(due) - len(self._preservation.held))
        commands: list[Command] = [
            self._expiry(key) for key in self._preservation.admit(now, due, others_live)
        ]
        commands += [c for key in self._cleanup.pop_due(now) if (c := self._removal(key, now))]
        await self._run_all(commands)

    def _live(self, key: Key) -> Instance | None:
        inst = self._view.find(*key)
        return inst if inst is not None and inst.live else None

    async def _take_expiries(self) -> None:
        """Every node drains the store's expiries; the leader's tick acts on them."""
        assert self._leases is not None
        async for key in self._leases.expirations():
            if self._nodes.leading:
                self._expired.add(key)

    def _on_cluster_change(self) -> None:
        """Members or leader moved: take up (or hand over) this node's share of checks."""
        if not self._nodes.leading:
            self._was_leading = False
        for inst in list(self._view.all_instances()):
            self._sync_check(inst)

    async def _run_all(self, commands: Sequence[Command]) -> None:
        """Concurrently, so a mass expiry shares group commits; failures are logged."""
        results = await asyncio.gather(
            *(self._changes.run(c) for c in commands), return_exceptions=True
        )
        for command, result in zip(commands, results, strict=True):
            if isinstance(result, StoreError):
                log.error("could not record %s: %s", command, result)
            elif isinstance(result, BaseException) and not isinstance(result, NotFound):
                log.error("%s failed", command, exc_info=result)

    def _release_beaten(self, now: float) -> None:
        """Held instances that heartbeat again are no longer waiting to expire."""
        for key in list(self._preservation.held):
            inst = self._view.find(*key)
            if inst is None or inst.status is not Status.ACTIVE:
                self._preservation.discard(key)
            elif self._ttl_deadline(inst) > now:
                self._preservation.discard(key)
                self._ttl.schedule(key, self._ttl_deadline(inst))

    def _overdue(self, key: Key, now: float) -> float:
        """The instance's ttl_s if it really missed its deadline, else 0 (and re-track it)."""
        inst = self._view.find(*key)
        if inst is None or inst.status is not Status.ACTIVE:
            return 0.0
        if self._ttl_deadline(inst) > now:
            self._ttl.schedule(key, self._ttl_deadline(inst))
            return 0.0
        return inst.ttl_s

    def _expiry(self, key: Key) -> Expire:
        inst = self._view.find(*key)
        seen = inst.last_heartbeat if inst is not None else NEVER
        return Expire(*key, seen_heartbeat=seen)

    def _removal(self, key: Key, now: float) -> Remove | None:
        inst = self._view.find(*key)
        if inst is None or inst.status is not Status.DEAD:
            return None
        if self._cleanup_deadline(inst) > now:
            self._cleanup.schedule(key, self._cleanup_deadline(inst))
            return None
        after = deregister_after(inst, self._config)
        return Remove(*key, reason=f"dead for {after:g}s")

    def _ttl_deadline(self, inst: Instance) -> float:
        return max(inst.last_heartbeat, self._grace_from) + inst.ttl_s

    def _cleanup_deadline(self, inst: Instance) -> float:
        after = deregister_after(inst, self._config)
        return max(inst.status_since + after, self._grace_from + inst.ttl_s)

    # -- following the registry ------------------------------------------------

    def _on_events(self, events: Sequence[Event]) -> None:
        for key in dict.fromkeys((e.service_type, str(e.instance_id)) for e in events):
            inst = self._view.find(*key)
            if inst is None:
                self._forget(key)
            else:
                self._track(inst)
                self._sync_check(inst)

    def _track(self, inst: Instance) -> None:
        key = (inst.service_type, inst.key)
        self._preservation.discard(key)
        if inst.status is Status.ACTIVE and self._leases is None:
            self._ttl.schedule(key, self._ttl_deadline(inst))
        else:  # maintenance is never expired; dead has nothing left to expire
            self._ttl.cancel(key)
        if inst.status is Status.DEAD:
            self._cleanup.schedule(key, self._cleanup_deadline(inst))
        else:
            self._cleanup.cancel(key)

    def _forget(self, key: Key) -> None:
        self._ttl.cancel(key)
        self._cleanup.cancel(key)
        self._preservation.discard(key)
        self._streaks.pop(key, None)
        check = self._checks.pop(key, None)
        if check is not None:
            check.cancel()

    # -- active checks ---------------------------------------------------------

    def _sync_check(self, inst: Instance) -> None:
        """Run exactly the check the instance asks for now (none in maintenance)."""
        if not self._running or self._limiter is None:
            return  # checks run only between start() and stop()
        key = (inst.service_type, inst.key)
        target = self._target(inst)
        current = self._checks.get(key)
        if current is not None and current.target == target:
            return
        if current is not None:
            current.cancel()
            del self._checks[key]
        self._streaks.pop(key, None)
        if target is not None:
            self._checks[key] = self._new_check(target, self._limiter)
            self._checks[key].start()

    def _target(self, inst: Instance) -> Target | None:
        wanted = self._config.active_checks and self._session is not None
        if not wanted or inst.check is None or inst.status is Status.MAINTENANCE:
            return None
        if not self._nodes.owns((inst.service_type, inst.key)):
            return None  # another node of the cluster probes it
        check = resolve_check(inst.check, self._config)
        deny = tuple(self._config.check_deny)
        return Target(inst.service_type, inst.key, inst.host, inst.port, check, deny)

    def _new_check(self, target: Target, limiter: Limiter) -> PeriodicCheck:
        if target.check.type == "tcp":
            return TcpCheck(target, self, limiter, self._rng)
        assert self._session is not None
        return HttpCheck(target, self, limiter, self._rng, self._session)

    async def update(self, target: Target, result: CheckResult) -> None:
        """The Notifier: record one probe's result through the change path."""
        inst = self._view.find(*target.key)
        if inst is None or inst.status is Status.MAINTENANCE:
            return  # it left, or went into maintenance while the probe was out
        streak = self._streaks.setdefault(target.key, Streak())
        mark = streak.judge(inst, target.check, result, self._clock())
        observed = Observe(
            *target.key,
            kind=mark.kind,
            status=mark.status,
            reason=mark.reason,
            output=result.output,
            busy=mark.busy,
            metrics=result.metrics,
            failing=streak.failing,
        )
        await self._run_all([observed])

    # -- operator face ---------------------------------------------------------

    def _report(self, metrics: Metrics) -> None:
        hold = self._preservation
        metrics.gauge("jarvis_checks_scheduled", lambda: len(self._checks))
        metrics.gauge("jarvis_self_preservation_active", lambda: hold.active)
        metrics.gauge("jarvis_self_preservation_held", lambda: len(hold.held))

    def status(self) -> dict[str, object]:
        limiter = self._limiter.status() if self._limiter else {}
        return {
            "self_preservation": self._preservation.status(),
            "active_checks": self._config.active_checks,
            "checks_scheduled": len(self._checks),
            **limiter,
            "ttl_tracked": len(self._ttl),
            "dead_tracked": len(self._cleanup),
            "running": self._running,
        }

    async def clear_self_preservation(self) -> None:
        released = self._preservation.clear(self._clock())
        await self._run_all([self._expiry(key) for key in released])
