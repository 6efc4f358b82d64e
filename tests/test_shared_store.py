"""Two writers on one shared log: what the etcd cluster stands on.

Each node applies every batch (its own included) from the log's watch, in revision
order; a batch planned against a view another node has moved past is refused
(StaleRead), planned again and retried, so no change is lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator

import pytest
from conftest import FakeClock, eventually
from shared_log import SharedLog, SharedLogStore

from jarvis_dns.changes import Changes
from jarvis_dns.errors import NotFound
from jarvis_dns.models import EventKind, InstanceSpec


@contextlib.asynccontextmanager
async def cluster(clock: FakeClock, nodes: int = 2) -> AsyncIterator[list[Changes]]:
    log = SharedLog()
    members = [Changes(SharedLogStore(log), clock) for _ in range(nodes)]
    followers = []
    for member in members:
        await member.load()
        followers.append(asyncio.create_task(member.follow()))
    try:
        yield members
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


def spec(iid: int, **kw: object) -> InstanceSpec:
    return InstanceSpec("auth", iid, "10.0.0.1", 8000 + iid, **kw)  # type: ignore[arg-type]


async def test_a_change_on_one_node_is_in_every_view(clock: FakeClock) -> None:
    async with cluster(clock) as (a, b):
        inst, created = await a.register(spec(1, metadata={"v": 1}))
        assert created and inst.modify_index == 1
        await asyncio.sleep(0)  # b's follower runs
        assert b.view.get("auth", 1).metadata == {"v": 1}
        await b.set_status("auth", 1, busy=True)
        assert a.view.get("auth", 1).busy
        assert a.events.since(0) == b.events.since(0)
        assert a.view.index == b.view.index == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_changes_of_one_instance_lose_nothing(clock: FakeClock, seed: int) -> None:
    """100 busy flips spread over three nodes: one order of events, the same everywhere."""
    rng = random.Random(seed)
    async with cluster(clock, nodes=3) as nodes:
        await nodes[0].register(spec(1))
        wanted = [rng.random() < 0.5 for _ in range(100)]
        await asyncio.gather(*(rng.choice(nodes).set_status("auth", 1, busy=b) for b in wanted))
        logs = [[(e.index, e.kind) for e in n.events.since(0)] for n in nodes]
        assert logs[0] == logs[1] == logs[2]
        flips = [kind for _, kind in logs[0] if kind in (EventKind.BUSY, EventKind.IDLE)]
        # every flip changed something: no two alike in a row, none applied blind
        assert all(x != y for x, y in itertools.pairwise(flips))
        final = nodes[0].view.get("auth", 1).busy
        assert all(n.view.get("auth", 1).busy is final for n in nodes)
        assert (flips[-1] is EventKind.BUSY) is final if flips else not final
        indexes = [index for index, _ in logs[0]]
        assert indexes == sorted(indexes)
        assert nodes[0].store.log.stale_reads > 0  # type: ignore[attr-defined]  # replans ran


async def test_a_plan_on_a_stale_view_is_planned_again(clock: FakeClock) -> None:
    async with cluster(clock) as (a, b):
        await a.register(spec(1))
        await asyncio.sleep(0)
        b_store = b.store
        assert isinstance(b_store, SharedLogStore)
        b_store.flowing.clear()  # b's view falls behind ...
        await a.register(spec(1, metadata={"v": 2}))
        flip = asyncio.create_task(b.set_status("auth", 1, busy=True))
        await eventually(lambda: b_store.log.stale_reads == 1)  # ... so its txn is refused
        assert not flip.done() and b.view.get("auth", 1).metadata == {}
        b_store.flowing.set()  # caught up, b plans again and commits
        inst = await flip
        assert inst.metadata == {"v": 2} and inst.busy
        await asyncio.sleep(0)
        assert a.view.get("auth", 1).busy and b_store.log.revision == 3


async def test_an_instance_registered_on_another_node_is_never_a_404(clock: FakeClock) -> None:
    """A client that registered on one node and beats another at once is not told to
    register again: the second node catches up before it answers "no such instance"."""
    async with cluster(clock) as (a, b):
        b_store = b.store
        assert isinstance(b_store, SharedLogStore)
        b_store.flowing.clear()  # b has not seen the registration yet
        await a.register(spec(1))
        beat = asyncio.create_task(b.heartbeat("auth", 1))
        await eventually(lambda: b._catching_up)  # waiting for its view, not answering 404
        b_store.flowing.set()
        assert (await beat).instance_id == 1
        with pytest.raises(NotFound):  # a name nobody registered is still a 404
            await b.heartbeat("auth", 2)
