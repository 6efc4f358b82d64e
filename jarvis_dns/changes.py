"""The only writer: plan -> await store.commit -> apply -> notify.

HTTP v1, the legacy routes and the health monitor hand a command to ``Changes.run``;
nothing else changes the view. For each command:

1. ``plan(view, command, now)`` validates against the current view (4xx on bad input);
2. a Touch (liveness only) is applied at once and noted for the batched flush;
3. a Batch is committed by the store, which numbers it; a failed commit raises
   StoreError and leaves the view untouched;
4. ``apply(view, index, batch)`` changes the view, in index order (a batch waits for
   the batches numbered before it), and the events go to the log and the subscribers
   (DNS cache, blocking queries, health monitor).

Commands on one instance run one at a time (each plans against the view its
predecessor left); commands on different instances commit concurrently, which is what
lets SQLite put many of them in one transaction. Batches committed by other nodes
arrive from ``store.changes`` and go through the same apply (``follow``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from jarvis_dns.errors import NotFound, StaleRead, StoreError
from jarvis_dns.metrics import Metrics
from jarvis_dns.metrics.families import Sample
from jarvis_dns.models import (
    Batch,
    Instance,
    InstanceId,
    InstanceSpec,
    JSONObject,
    Key,
    LivenessRow,
    Status,
)
from jarvis_dns.registry import (
    Command,
    Deregister,
    EventLog,
    Heartbeat,
    LivenessBuffer,
    Register,
    SetStatus,
    Touch,
    View,
    apply,
    plan,
    stamp,
    touch,
)
from jarvis_dns.registry.events import Subscriber
from jarvis_dns.registry.liveness import row_of
from jarvis_dns.registry.view import BUSY
from jarvis_dns.store.base import Store
from jarvis_dns.turns import in_turns

log = logging.getLogger("jarvis_dns.changes")
Clock = Callable[[], float]
# A command whose keys other nodes keep changing is planned again at most this often.
MAX_REPLANS = 16
# How long a write to a shared store waits for its own echo before answering 503.
CATCH_UP_S = 5.0
# Beaten instances a liveness flush copies in one turn of the event loop: 50,000 at once
# held every request (and DNS) for about 80 ms, once a second under a heartbeat flood,
# and 2,000 a turn still 12-16 ms on a slow VM; 250 take about half a millisecond there.
FLUSH_CHUNK = 250


class Changes:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        view: View | None = None,
        events: EventLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.view = view if view is not None else View()
        self.events = events if events is not None else EventLog()
        self.liveness = LivenessBuffer()
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        self._locks = _KeyLocks()
        self._sequencer = _Sequencer(self._apply)
        self._catching_up: list[tuple[int, asyncio.Future[None]]] = []
        metrics = metrics or Metrics()
        self._applied = metrics.counter("jarvis_events_total")
        self._beats = metrics.counter("jarvis_heartbeats_total")
        self._commit_time = metrics.histogram("jarvis_store_commit_seconds")
        self._report(metrics)

    async def load(self) -> None:
        """Take what the store kept; once, before serving."""
        snapshot = await self.store.load()
        self.view.load(snapshot)
        self.events.extend(sorted(snapshot.events, key=lambda e: e.index))

    def now(self) -> float:
        return self._clock()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """fn(events) after every applied batch; returns the unsubscribe call."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def _report(self, metrics: Metrics) -> None:
        """What the view and the store show, read when scraped."""
        view = self.view
        metrics.gauge("jarvis_change_index", lambda: view.index)
        metrics.gauge("jarvis_store_up", lambda: self.store.status().get("state") == "ok")

        def instances() -> list[Sample]:
            tallies = [(svc, view.tally(svc)) for svc in view.service_types()]
            return [((svc, s.value), t[s.value]) for svc, t in tallies for s in Status]

        def busy() -> list[Sample]:
            return [((svc,), view.tally(svc)[BUSY]) for svc in view.service_types()]

        metrics.reading("jarvis_instances", instances)
        metrics.reading("jarvis_instances_busy", busy)

    # -- the commands the faces use ----------------------------------------------

    async def register(self, spec: InstanceSpec) -> tuple[Instance, bool]:
        """Register or update; returns the instance and whether it is new."""
        existed = self.view.find(spec.service_type, spec.instance_id) is not None
        inst = await self.run(Register(spec))
        assert inst is not None
        return inst, not existed

    async def heartbeat(
        self,
        service_type: str,
        instance_id: InstanceId,
        busy: bool | None = None,
        metrics: JSONObject | None = None,
    ) -> Instance:
        command = Heartbeat(service_type, instance_id, busy, metrics)
        inst = self.beat_now(command)
        if inst is not None:
            return inst
        inst = await self.run(command)
        assert inst is not None
        self._beats.inc(service_type)
        return inst

    def beat_now(self, command: Heartbeat) -> Instance | None:
        """The hot path of heartbeat(), without awaiting: with nothing in flight for
        the instance, a beat that changes nothing but liveness needs no commit and no
        lock. None: this beat needs heartbeat()."""
        if command.key in self._locks:
            return None
        try:
            planned = plan(self.view, command, self._clock())
        except NotFound:
            if not self.store.echoes:
                raise
            return None  # heartbeat() first catches up with the other nodes
        if not isinstance(planned, Touch):
            return None
        self._beats.inc(command.service_type)  # after the plan: only known services count
        return self._touch(planned)

    async def set_status(
        self,
        service_type: str,
        instance_id: InstanceId,
        status: Status | None = None,
        busy: bool | None = None,
        reason: str = "status update",
    ) -> Instance:
        inst = await self.run(SetStatus(service_type, instance_id, status, busy, reason))
        assert inst is not None
        return inst

    async def deregister(
        self, service_type: str, instance_id: InstanceId, reason: str = "deregistered"
    ) -> Instance:
        inst = await self.run(Deregister(service_type, instance_id, reason))
        assert inst is not None
        return inst

    # -- the one path every command takes ------------------------------------------

    async def run(self, command: Command) -> Instance | None:
        """Plan, commit and apply one command; the instance after it (for a deletion,
        as it was; None when there was nothing to change and nothing to find)."""
        key = command.key
        await self._locks.acquire(key)
        release = True
        try:
            caught_up = not self.store.echoes
            for _ in range(MAX_REPLANS):
                before = self.view.find(*key)
                try:
                    planned = plan(self.view, command, self._clock())
                except NotFound:
                    if caught_up:
                        raise
                    # Registered on another node a moment ago? Not before our view says so.
                    await self._caught_up(await self.store.latest_index())
                    caught_up = True
                    continue
                if planned is None:
                    return before
                if isinstance(planned, Touch):
                    return self._touch(planned)
                # Once the store has the batch, the view must get it too, even if the
                # request that asked for it goes away meanwhile: the sequencer applies it
                # whoever waits, and a shared store's commit is shielded.
                landing = self._landing(planned)
                try:
                    if isinstance(landing, _Slot):
                        assert landing.landed is not None
                        await landing.landed
                    else:
                        await asyncio.shield(landing)
                except StaleRead as stale:  # another node got there first: catch up, replan
                    await self._caught_up(stale.revision)
                    continue
                except asyncio.CancelledError:
                    # The instance stays locked until its batch is applied, so the next
                    # command on it plans on the view that batch leaves.
                    release = not self._release_after(landing, key)
                    raise
                # The instance as this batch left it: with a shared store the view may
                # already hold later changes by other nodes.
                return planned.puts[0] if planned.puts else before
            raise StoreError(f"{key[0]}/{key[1]} kept changing under {MAX_REPLANS} attempts")
        finally:
            if release:
                self._locks.release(key)

    def submit(self, command: Command) -> Instance | asyncio.Future[Instance | None] | None:
        """run() without a task or a coroutine, for the fast lane's registrations: the
        instance at once when there is nothing to commit, else a future done once the
        batch is applied (or with the error that stopped it). Only where nothing can
        make the command wait before its commit: this node's own store, and no command
        in flight on the instance; anything else goes to run() in a task."""
        key = command.key
        if self.store.echoes or key in self._locks:
            return asyncio.ensure_future(self.run(command))
        before = self.view.find(*key)
        planned = plan(self.view, command, self._clock())
        if planned is None:
            return before
        if isinstance(planned, Touch):
            return self._touch(planned)
        self._locks.hold(key)
        landing = self._landing(planned, awaited=False)
        assert isinstance(landing, _Slot)  # this node's own store
        done: asyncio.Future[Instance | None] = asyncio.get_running_loop().create_future()
        after = planned.puts[0] if planned.puts else before

        def finished(error: BaseException | None) -> None:
            self._locks.release(key)
            if error is None:
                done.set_result(after)
            elif isinstance(error, asyncio.CancelledError):  # the store shut down
                done.cancel()
            else:
                done.set_exception(error)

        landing.after.append(finished)
        return done

    def _touch(self, change: Touch) -> Instance:
        inst = touch(self.view, change)
        assert inst is not None  # planned against this view, with no await between
        self.liveness.note(inst)
        return inst

    def _release_after(self, landing: _Slot | asyncio.Future[None], key: Key) -> bool:
        """Release key's lock once the batch is applied (or failed); False: it already
        was, and the caller releases it."""
        if isinstance(landing, _Slot):
            if landing.finished:
                return False
            landing.after.append(lambda _: self._locks.release(key))
            return True
        if landing.done():
            return False
        landing.add_done_callback(lambda _: self._locks.release(key))
        return True

    def _landing(self, batch: Batch, awaited: bool = True) -> _Slot | asyncio.Future[None]:
        """Commit the batch: the sequencer's slot, whose ``landed`` is done once the view
        has it (or the commit failed, with the store's error); with a shared store, a
        future done once this node's view has it."""
        if self.store.echoes:  # it comes back through follow(), in revision order
            return asyncio.ensure_future(self._commit_shared(batch))
        # Only this node writes: apply in the order the store numbers, which is call
        # order. Callbacks, not a task per batch: a registration flood pays for none.
        slot = self._sequencer.take(batch, awaited)
        began = time.perf_counter()

        def committed(done: asyncio.Future[int]) -> None:
            self._commit_time.observe(time.perf_counter() - began)
            self._sequencer.settle(slot, done)

        try:  # a store whose commit() hands back a future (SQLite) costs no task either
            committing: asyncio.Future[int] = asyncio.ensure_future(self.store.commit(batch))
        except Exception as exc:  # failed before it began: its slot must still settle
            committing = asyncio.get_running_loop().create_future()
            committing.set_exception(exc)
        committing.add_done_callback(committed)
        return slot

    async def _commit_shared(self, batch: Batch) -> None:
        began = time.perf_counter()
        index = await self.store.commit(batch)
        self._commit_time.observe(time.perf_counter() - began)
        stamp(batch, index)  # the answer shows the batch's own index
        await self._caught_up(index)

    async def _caught_up(self, index: int) -> None:
        """Until the view has applied everything up to index (a shared store's echo)."""
        if self.view.index >= index:
            return
        arrived = asyncio.get_running_loop().create_future()
        self._catching_up.append((index, arrived))
        try:
            await asyncio.wait_for(arrived, CATCH_UP_S)
        except TimeoutError:
            raise StoreError(
                f"committed at index {index}, but this node's view is behind: "
                "the change shows once the store's watch catches up"
            ) from None

    def _wake_caught_up(self) -> None:
        index = self.view.index
        waiting = []
        for wanted, arrived in self._catching_up:
            if wanted <= index:
                if not arrived.done():
                    arrived.set_result(None)
            else:
                waiting.append((wanted, arrived))
        self._catching_up = waiting

    def _apply(self, index: int, batch: Batch) -> None:
        events = apply(self.view, index, batch)
        for inst in batch.puts:
            self.liveness.forget((inst.service_type, inst.key))  # the full write has it
        self.events.extend(events)
        for event in events:
            self._applied.inc(event.kind.value)
        for fn in list(self._subscribers):
            try:
                fn(events)
            except Exception:  # the change is applied: every other subscriber must hear it
                log.exception("a subscriber failed on index %d", index)
        if self._catching_up:
            self._wake_caught_up()

    # -- what other nodes committed, and the liveness flush ---------------------------

    async def follow(self) -> None:
        """Apply batches other nodes committed, until the store's stream ends."""
        async for index, change in self.store.changes(self.view.index):
            if isinstance(change, Touch):  # another node's heartbeat times and metrics
                touch(self.view, change)
            elif index > self.view.index:
                self._apply(index, change)

    async def flush_liveness(self) -> bool:
        """Write the beats noted since the last flush; put them back if that fails.
        The rows are copied FLUSH_CHUNK at a time, the loop serving requests in between."""
        noted = self.liveness.take()
        if not noted:
            return True
        rows: list[LivenessRow] = []
        async for chunk in in_turns(noted, FLUSH_CHUNK):
            rows += [row_of(inst) for inst in chunk]
        try:
            await self.store.write_liveness(rows)
        except StoreError as exc:
            log.error("liveness flush failed; the next flush writes them again: %s", exc)
            self.liveness.put_back(rows, self.view)
            return False
        return True


@dataclass(slots=True, eq=False)
class _Slot:
    batch: Batch
    # What run() awaits; cancelled when its waiter goes away (applied anyway). None for
    # submit(), which hears through ``after``.
    landed: asyncio.Future[None] | None
    committed: asyncio.Future[int] | None = None  # the store's answer, once it came
    finished: bool = False  # applied, or failed
    # Called once it is, with the error (None: applied).
    after: list[Callable[[BaseException | None], None]] = field(default_factory=list)


class _Sequencer:
    """Applies batches in the order the store numbered them (the order they were
    taken): a batch whose commit finished early waits for the ones numbered before it
    (applied or failed)."""

    def __init__(self, apply: Callable[[int, Batch], None]) -> None:
        self._apply = apply
        self._slots: deque[_Slot] = deque()

    def take(self, batch: Batch, awaited: bool = True) -> _Slot:
        landed = asyncio.get_running_loop().create_future() if awaited else None
        slot = _Slot(batch, landed)
        self._slots.append(slot)
        return slot

    def settle(self, slot: _Slot, committed: asyncio.Future[int]) -> None:
        slot.committed = committed
        slots = self._slots
        while slots and slots[0].committed is not None:
            self._finish(slots.popleft())

    def _finish(self, slot: _Slot) -> None:
        committed, landed = slot.committed, slot.landed
        assert committed is not None
        slot.finished = True
        error: BaseException | None
        if committed.cancelled():
            error = asyncio.CancelledError()
            if landed is not None:
                landed.cancel()
        else:
            error = committed.exception()
            if error is None:
                try:
                    self._apply(committed.result(), slot.batch)
                except Exception as exc:  # answered as the request's error, never lost
                    error = exc
            if landed is not None and not landed.done():  # done: its request went away
                if error is None:
                    landed.set_result(None)
                else:
                    landed.set_exception(error)
        for fn in slot.after:
            fn(error)


class _KeyLocks:
    """One FIFO lock per instance key, kept only while someone holds or waits for it.

    Lighter than an asyncio.Lock per key: the uncontended case is one dict insert and
    one delete, which is every command but those racing on the same instance."""

    def __init__(self) -> None:
        self._waiters: dict[Key, deque[asyncio.Future[None]]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._waiters

    def hold(self, key: Key) -> None:
        """Take the lock of a key nobody holds (the caller checked), without awaiting."""
        assert key not in self._waiters
        self._waiters[key] = deque()

    async def acquire(self, key: Key) -> None:
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = deque()
            return
        turn = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(key)  # handed the lock as the waiter went away: pass it on
            else:
                waiters.remove(turn)
            raise

    def release(self, key: Key) -> None:
        waiters = self._waiters[key]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._waiters[key]
