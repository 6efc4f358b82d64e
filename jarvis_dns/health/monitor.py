"""HealthMonitor: TTL expiry, active checks, cleanup of the dead, self-preservation.

It changes state only through Registry commands and learns of every change from the
Registry (subscribe for Events, on_heartbeat for the beats that change nothing else),
so its own bookkeeping is O(1) per change and its tick costs only what falls due.

Active checks are opt-in per instance: only an instance registered with a `check` is
probed (and only while `config.active_checks` is on). Every instance has a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

import aiohttp

from jarvis_dns.config import Config
from jarvis_dns.errors import NotFound
from jarvis_dns.health.checks import HttpCheck, PeriodicCheck, Target, TcpCheck
from jarvis_dns.health.limiter import Limiter
from jarvis_dns.health.outcome import CheckResult, Streak
from jarvis_dns.health.preservation import SelfPreservation
from jarvis_dns.health.targets import deregister_after, resolve_check
from jarvis_dns.health.wheel import TimerWheel
from jarvis_dns.models import Event, EventKind, Instance, Status
from jarvis_dns.registry import Registry

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
        registry: Registry,
        config: Config,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self._registry = registry
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
        self._running = False  # checks run only between start() and stop()
        registry.subscribe(self._on_events)
        registry.on_heartbeat(self._on_heartbeat)
        # A heartbeat must not revive an instance whose active check still fails, or it
        # would flap in and out of answers with every beat.
        registry.set_resume_guard(lambda inst: not self._check_failing(_key(inst)))

    # -- lifecycle -------------------------------------------------------------

    def load(self, now: float) -> None:
        """Track everything already in the registry, with one TTL of restart grace."""
        self._grace_from = now
        for inst in list(self._registry.all_instances()):
            self._track(inst)

    async def start(self) -> None:
        self._limiter = Limiter(self._config.checks_in_flight)
        if self._config.active_checks:
            self._session = self._session_factory()
        self.load(self._clock())
        self._running = True
        for inst in list(self._registry.all_instances()):
            self._sync_check(inst)
        self._ticker = asyncio.create_task(self._tick_loop(), name="health tick")

    async def stop(self) -> None:
        self._running = False
        tasks = [t for t in (self._ticker, *self._stop_all_checks()) if t is not None]
        self._ticker = None
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
        connector = aiohttp.TCPConnector(force_close=True, limit=self._config.checks_in_flight)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout())

    async def _tick_loop(self) -> None:
        while True:
            try:
                self.tick(self._clock())
            except Exception:  # the monitor must outlive any one bad tick
                log.exception("health tick failed")
            # Wake just after the next bucket boundary, where deadlines fall due.
            await asyncio.sleep(TICK_S - self._clock() % TICK_S + 0.005)

    # -- the tick --------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Expire what missed its TTL (unless self-preservation holds), remove the long dead."""
        due = [(key, ttl) for key in self._ttl.pop_due(now) if (ttl := self._overdue(key, now))]
        others_live = len(self._ttl)
        for key in self._preservation.admit(now, due, others_live):
            self._expire(key)
        for key in self._cleanup.pop_due(now):
            self._remove_if_still_dead(key, now)

    def _overdue(self, key: Key, now: float) -> float:
        """The instance's ttl_s if it really missed its deadline, else 0 (and re-track it)."""
        inst = self._registry.find(*key)
        if inst is None or inst.status is not Status.ACTIVE:
            return 0.0
        if self._ttl_deadline(inst) > now:
            self._ttl.schedule(key, self._ttl_deadline(inst))
            return 0.0
        return inst.ttl_s

    def _expire(self, key: Key) -> None:
        inst = self._registry.find(*key)
        if inst is None or inst.status is not Status.ACTIVE:
            return
        self._registry.mark(*key, EventKind.TTL_EXPIRED, Status.DEAD, "ttl expired")

    def _remove_if_still_dead(self, key: Key, now: float) -> None:
        inst = self._registry.find(*key)
        if inst is None or inst.status is not Status.DEAD:
            return
        if self._cleanup_deadline(inst) > now:
            self._cleanup.schedule(key, self._cleanup_deadline(inst))
            return
        after = deregister_after(inst, self._config)
        reason = f"dead for {after:g}s"
        self._registry.deregister(*key, reason=reason, kind=EventKind.REMOVED)

    def _ttl_deadline(self, inst: Instance) -> float:
        return max(inst.last_heartbeat, self._grace_from) + inst.ttl_s

    def _cleanup_deadline(self, inst: Instance) -> float:
        after = deregister_after(inst, self._config)
        return max(inst.status_since + after, self._grace_from + inst.ttl_s)

    # -- following the registry ------------------------------------------------

    def _on_events(self, events: Sequence[Event]) -> None:
        for key in dict.fromkeys((e.service_type, str(e.instance_id)) for e in events):
            inst = self._registry.find(*key)
            if inst is None:
                self._forget(key)
            else:
                self._track(inst)
                self._sync_check(inst)

    def _on_heartbeat(self, inst: Instance) -> None:
        if inst.status is not Status.ACTIVE:
            return
        key = _key(inst)
        self._preservation.discard(key)
        self._ttl.schedule(key, self._ttl_deadline(inst))

    def _check_failing(self, key: Key) -> bool:
        streak = self._streaks.get(key)
        return streak is not None and streak.failing

    def _track(self, inst: Instance) -> None:
        key = (inst.service_type, inst.key)
        self._preservation.discard(key)
        if inst.status is Status.ACTIVE:
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
        check = resolve_check(inst.check, self._config)
        return Target(inst.service_type, inst.key, inst.host, inst.port, check)

    def _new_check(self, target: Target, limiter: Limiter) -> PeriodicCheck:
        if target.check.type == "tcp":
            return TcpCheck(target, self, limiter, self._rng)
        assert self._session is not None
        return HttpCheck(target, self, limiter, self._rng, self._session)

    def update(self, target: Target, result: CheckResult) -> None:
        """The Notifier: apply one probe's result through the Registry."""
        inst = self._registry.find(*target.key)
        if inst is None or inst.status is Status.MAINTENANCE:
            return  # it left, or went into maintenance while the probe was out
        streak = self._streaks.setdefault(target.key, Streak())
        mark = streak.judge(inst, target.check, result, self._clock())
        with contextlib.suppress(NotFound):
            self._registry.mark(
                *target.key,
                mark.kind,
                mark.status,
                mark.reason,
                check_output=result.output,
                busy=mark.busy,
                metrics=result.metrics,
            )

    # -- operator face ---------------------------------------------------------

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

    def clear_self_preservation(self) -> None:
        for key in self._preservation.clear(self._clock()):
            self._expire(key)


def _key(inst: Instance) -> Key:
    return (inst.service_type, inst.key)
