"""The etcd store as the cluster uses it: several nodes (Changes over their own EtcdStore)
on real etcd processes.

A change on one node reaches every view through its watch; concurrent changes of one
instance on two nodes are refused and planned again (StaleRead), never lost; the store
fails over between members, answers StoreError in bounded time without quorum and
recovers without being recreated; the watch survives the death of its member and
reloads when its revision was compacted; a lease no node keeps alive expires once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import FakeClock, eventually
from etcd_cluster import EtcdCluster, running

from jarvis_dns.changes import Changes
from jarvis_dns.errors import StaleRead, StoreError
from jarvis_dns.models import Batch, EventKind, InstanceSpec, Key, Status
from jarvis_dns.registry import EventLog
from jarvis_dns.registry.commands import Expire
from jarvis_dns.store.base import Reload
from jarvis_dns.store.etcd import KEEPALIVE_CHUNK, EtcdStore
from jarvis_dns.store.etcd_api import EtcdClient

pytestmark = pytest.mark.etcd

_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def one_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with running(tmp_path_factory.mktemp("etcd1")) as cluster:
        yield cluster


@pytest.fixture
def three_members(tmp_path: Path) -> Iterator[EtcdCluster]:
    with running(tmp_path / "etcd3", size=3) as cluster:
        yield cluster


class Node:
    """One jarvis-dns node's store side: an EtcdStore, its Changes and its follower."""

    def __init__(self, endpoints: list[str], prefix: str, clock: FakeClock) -> None:
        self.prefix = prefix
        self.store = EtcdStore(endpoints, prefix, "jarvis", event_log_size=1000)
        self.changes = Changes(self.store, clock, events=EventLog(1000))
        self.follower: asyncio.Task[None] | None = None
        self.stale_reads = 0
        commit = self.store.commit

        async def counting(batch: Batch) -> int:
            try:
                return await commit(batch)
            except StaleRead:
                self.stale_reads += 1
                raise

        self.store.commit = counting  # type: ignore[method-assign]

    async def start(self) -> None:
        await self.changes.load()
        self.follow()

    def follow(self) -> None:
        self.follower = asyncio.create_task(self.changes.follow())

    async def stop_following(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            await asyncio.gather(self.follower, return_exceptions=True)
            self.follower = None

    async def close(self) -> None:
        await self.stop_following()
        await self.store.close()


@contextlib.asynccontextmanager
async def nodes(
    cluster: EtcdCluster, clock: FakeClock, count: int = 2
) -> AsyncIterator[list[Node]]:
    prefix = f"/cluster-{next(_prefixes)}"
    members = [Node(cluster.endpoints, prefix, clock) for _ in range(count)]
    try:
        for node in members:
            await node.start()
        yield members
    finally:
        for node in members:
            await node.close()


def spec(iid: int, **kw: object) -> InstanceSpec:
    return InstanceSpec("auth", iid, "10.0.0.1", 8000 + iid, **kw)  # type: ignore[arg-type]


def post(endpoint: str, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(f"http://{endpoint}{path}", json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


async def next_expiry(store: EtcdStore, expirations: AsyncIterator[Key]) -> Key:
    return await asyncio.wait_for(anext(expirations), timeout=10)


# -- two nodes, one etcd -----------------------------------------------------------


async def test_a_change_on_one_node_is_in_every_view(
    one_member: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(one_member, clock) as (a, b):
        inst, created = await a.changes.register(spec(1, metadata={"v": 1}))
        assert created
        await eventually(lambda: b.changes.view.find("auth", 1) is not None)
        seen = b.changes.view.get("auth", 1)
        assert seen.metadata == {"v": 1}
        assert (seen.create_index, seen.modify_index) == (inst.create_index, inst.modify_index)

        flipped = await b.changes.set_status("auth", 1, busy=True)
        await eventually(lambda: a.changes.view.index == flipped.modify_index)
        assert a.changes.view.get("auth", 1).busy
        assert a.changes.events.since(0) == b.changes.events.since(0)
        assert [e.kind for e in a.changes.events.since(0)] == [EventKind.REGISTERED, EventKind.BUSY]

        # Metrics ride the liveness flush and reach the other node as a Touch, without
        # moving the change index.
        index = a.changes.view.index
        await a.changes.heartbeat("auth", 1, metrics={"load": 7})
        assert await a.changes.flush_liveness()
        await eventually(lambda: b.changes.view.get("auth", 1).metrics == {"load": 7})
        assert b.changes.view.index == a.changes.view.index == index

        # A node started later loads the same state and log.
        late = Node(one_member.endpoints, a.prefix, clock)
        try:
            await late.start()
            assert late.changes.view.index == index
            assert late.changes.view.get("auth", 1).metrics == {"load": 7}
            assert late.changes.events.since(0) == a.changes.events.since(0)
        finally:
            await late.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_concurrent_flips_of_one_instance_lose_nothing(
    one_member: EtcdCluster, clock: FakeClock, seed: int
) -> None:
    """Busy flips spread over three nodes: refused when stale, planned again, one order
    of events everywhere."""
    rng = random.Random(seed)
    async with nodes(one_member, clock, count=3) as members:
        await members[0].changes.register(spec(1))
        wanted = [rng.random() < 0.5 for _ in range(60)]
        await asyncio.gather(
            *(rng.choice(members).changes.set_status("auth", 1, busy=b) for b in wanted)
        )
        top = max(n.changes.view.index for n in members)
        for node in members:
            await eventually(lambda node=node: node.changes.view.index == top)  # type: ignore[misc]
        logs = [[(e.index, e.kind) for e in n.changes.events.since(0)] for n in members]
        assert logs[0] == logs[1] == logs[2]
        flips = [kind for _, kind in logs[0] if kind in (EventKind.BUSY, EventKind.IDLE)]
        assert all(x != y for x, y in itertools.pairwise(flips))  # none applied blind
        final = members[0].changes.view.get("auth", 1).busy
        assert all(n.changes.view.get("auth", 1).busy is final for n in members)
        assert (flips[-1] is EventKind.BUSY) is final if flips else not final
        indexes = [index for index, _ in logs[0]]
        assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
        assert sum(n.stale_reads for n in members) > 0  # the txn compares refused some


async def test_a_plan_on_a_stale_view_is_planned_again(
    one_member: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(one_member, clock) as (a, b):
        await a.changes.register(spec(1))
        await eventually(lambda: b.changes.view.index == a.changes.view.index)
        await b.stop_following()  # b's view falls behind ...
        await a.changes.register(spec(1, metadata={"v": 2}))
        flip = asyncio.create_task(b.changes.set_status("auth", 1, busy=True))
        await eventually(lambda: b.stale_reads == 1)  # ... so its txn is refused
        assert not flip.done() and b.changes.view.get("auth", 1).metadata == {}
        b.follow()  # caught up, b plans again and commits
        inst = await flip
        assert inst.metadata == {"v": 2} and inst.busy
        await eventually(lambda: a.changes.view.get("auth", 1).busy)


async def test_a_compacted_watch_reloads(one_member: EtcdCluster, clock: FakeClock) -> None:
    async with nodes(one_member, clock) as (a, b):
        for i in range(3):
            await a.changes.register(spec(i))
        await eventually(lambda: b.changes.view.count() == 3)
        await b.stop_following()
        await a.changes.deregister("auth", 0)
        await a.changes.set_status("auth", 1, Status.MAINTENANCE)
        await a.changes.register(spec(5))
        revision = a.changes.view.index
        await asyncio.to_thread(
            post, one_member.endpoints[0], "/v3/kv/compaction", {"revision": str(revision)}
        )
        reloads: list[Reload] = []
        changes = b.store.changes

        def spying(from_index: int) -> AsyncIterator[tuple[int, Batch | object]]:
            async def spy() -> AsyncIterator[tuple[int, Batch | object]]:
                async for index, change in changes(from_index):
                    if isinstance(change, Reload):
                        reloads.append(change)
                    yield index, change

            return spy()

        b.store.changes = spying  # type: ignore[assignment,method-assign]
        b.follow()
        await eventually(lambda: b.changes.view.index == revision)
        assert len(reloads) == 1 and reloads[0].deletes == [("auth", "0")]
        view_a, view_b = a.changes.view, b.changes.view
        assert sorted(i.key for i in view_b.instances("auth")) == ["1", "2", "5"]
        for inst in view_a.instances("auth"):
            assert view_b.get("auth", inst.instance_id).to_dict() == inst.to_dict()
        assert b.changes.events.since(0) == a.changes.events.since(0)
        # ... and it follows on from there
        await a.changes.register(spec(6))
        await eventually(lambda: b.changes.view.find("auth", 6) is not None)


async def test_a_watch_catches_up_on_a_burst(one_member: EtcdCluster, clock: FakeClock) -> None:
    """A watch from an old revision gets up to a thousand revisions in one message."""
    async with nodes(one_member, clock) as (a, b):
        await b.stop_following()
        big = {"blob": "x" * 2000}
        await asyncio.gather(*(a.changes.register(spec(i, metadata=big)) for i in range(200)))
        b.follow()
        await eventually(lambda: b.changes.view.index == a.changes.view.index)
        assert b.changes.view.count() == 200
        assert b.changes.events.since(0) == a.changes.events.since(0)


# -- leases --------------------------------------------------------------------------


async def test_a_lease_nobody_keeps_alive_expires_once(
    one_member: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(one_member, clock) as (a, b):
        expirations = b.store.expirations()
        await a.changes.register(spec(1, ttl_s=1))
        await a.changes.register(spec(2, ttl_s=1))
        await a.changes.deregister("auth", 2)  # gone with its lease: no expiry
        assert await next_expiry(b.store, expirations) == ("auth", "1")
        await a.changes.register(spec(3, ttl_s=1))
        await eventually(lambda: b.changes.view.find("auth", 3) is not None)
        assert b.store.without_lease([("auth", "1"), ("auth", "3")]) == [("auth", "1")]
        # the next one is 3's: 1 expired once, 2 never
        assert await next_expiry(b.store, expirations) == ("auth", "3")


async def test_heartbeats_to_another_node_keep_the_lease(
    one_member: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(one_member, clock) as (a, b):
        expirations = a.store.expirations()
        await a.changes.register(spec(1, ttl_s=1))
        await a.changes.register(spec(2, ttl_s=1))
        await eventually(lambda: b.changes.view.count() == 2)
        beating = True

        async def beat() -> None:
            while beating:  # node b only: a heartbeat and a flush every 200 ms
                await b.changes.heartbeat("auth", 1)
                assert await b.changes.flush_liveness()
                await asyncio.sleep(0.2)

        beats = asyncio.create_task(beat())
        try:
            assert await next_expiry(a.store, expirations) == ("auth", "2")
            started = time.monotonic()
            # three more TTLs of beats through b: 1's lease is still there
            await eventually(lambda: time.monotonic() - started > 3, timeout=5)
            live = await a.store.client.range(a.store.keys.live(("auth", "1")))
            assert len(live.kvs) == 1 and live.kvs[0].lease
        finally:
            beating = False
            await beats
        assert await next_expiry(a.store, expirations) == ("auth", "1")  # beats stopped


async def test_a_revived_instance_gets_a_new_lease(
    one_member: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(one_member, clock) as (a, _):
        expirations = a.store.expirations()
        await a.changes.register(spec(1, ttl_s=1))
        key = await next_expiry(a.store, expirations)
        seen = a.changes.view.get(*key).last_heartbeat
        await a.changes.run(Expire("auth", 1, seen))
        assert a.changes.view.get("auth", 1).status is Status.DEAD
        clock.advance(1)
        await a.changes.heartbeat("auth", 1)  # heartbeat resumed: a fresh lease
        assert a.changes.view.get("auth", 1).status is Status.ACTIVE
        assert await next_expiry(a.store, expirations) == ("auth", "1")


# -- three members: failover, no quorum, recovery ---------------------------------------


async def test_commits_fail_over_and_come_back(
    three_members: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(three_members, clock, count=1) as (a,):
        await a.changes.register(spec(1))
        first = three_members.member_at(a.store.client.current)
        first.kill()  # kill -9 the member the client talks to
        await a.changes.set_status("auth", 1, busy=True)  # fails over to another
        assert a.store.client.current != first.endpoint
        assert a.changes.view.get("auth", 1).busy

        second = three_members.member_at(a.store.client.current)
        second.kill()  # no quorum left
        started = time.monotonic()
        with pytest.raises(StoreError, match="unavailable"):
            await a.changes.set_status("auth", 1, busy=False)
        assert time.monotonic() - started < 5  # bounded: an HTTP 503, never a hang
        assert a.changes.view.get("auth", 1).busy  # the view never saw it

        first.start()
        second.start()
        deadline = time.monotonic() + 30
        while True:  # the same store, once etcd has a leader again
            try:
                await a.changes.set_status("auth", 1, busy=False)
                break
            except StoreError:
                assert time.monotonic() < deadline, "etcd did not recover"
        assert not a.changes.view.get("auth", 1).busy
        inst, created = await a.changes.register(spec(2))
        assert created and inst.create_index == a.changes.view.index


async def test_the_watch_resumes_when_its_member_dies(
    three_members: EtcdCluster, clock: FakeClock
) -> None:
    async with nodes(three_members, clock) as (a, b):
        await a.changes.register(spec(1))
        await eventually(lambda: b.changes.view.find("auth", 1) is not None)
        watched = three_members.member_at(b.store.client.watching)
        watched.kill()
        await a.changes.set_status("auth", 1, Status.MAINTENANCE)
        await a.changes.register(spec(2))
        await eventually(lambda: b.changes.view.index == a.changes.view.index)
        assert b.store.client.watching != watched.endpoint
        assert b.changes.view.get("auth", 1).status is Status.MAINTENANCE
        assert b.changes.events.since(0) == a.changes.events.since(0)


# -- lease renewals go to the leader --------------------------------------------------


def leading(cluster: EtcdCluster) -> str | None:
    """The endpoint (as the client spells it) of the member that names itself leader."""
    for member in cluster.members:
        try:
            status = post(member.endpoint, "/v3/maintenance/status", {})
        except OSError:
            continue  # killed
        header = status["header"]
        assert isinstance(header, dict)
        if status.get("leader") == header.get("member_id"):
            return f"http://{member.endpoint}"
    return None


async def kept_alive(client: EtcdClient, lease: int, within: float = 30) -> int:
    """The lease's TTL after a renewal, retried while etcd elects a new leader."""
    deadline = time.monotonic() + within
    while True:
        try:
            return (await client.lease_keepalive([lease]))[lease]
        except StoreError:
            assert time.monotonic() < deadline, "no member renewed the lease"


async def test_every_lease_of_a_big_renewal_is_renewed(one_member: EtcdCluster) -> None:
    """The gateway often answers only part of a streamed renewal and drops the rest
    (etcd-io/etcd#8237): the client sends the unanswered again, so no lease is taken
    for gone (which cost a new lease and a write per instance) and none lapses."""
    client = EtcdClient(one_member.endpoints)
    try:
        leases = []
        for start in range(0, KEEPALIVE_CHUNK, 100):
            grants = (client.lease_grant(600) for _ in range(start, start + 100))
            leases += await asyncio.gather(*grants)
        for _ in range(5):
            alive = await client.lease_keepalive(leases)
            assert sorted(alive) == sorted(leases)
            assert min(alive.values()) > 0
    finally:
        await client.close()


async def test_lease_renewals_go_to_the_leader_and_follow_it(three_members: EtcdCluster) -> None:
    """A follower forwards every renewal to the leader: the client finds the leader
    (asking in the background) and renews there; when the leader dies the renewals go
    on through another member, and the new leader is found."""
    client = EtcdClient(three_members.endpoints, leader_check_s=0.05)
    try:
        leader = leading(three_members)
        assert leader is not None
        lease = await client.lease_grant(60)

        async def found(endpoint: str | None) -> bool:
            await client.lease_keepalive([lease])  # asks again when the answer is old
            return client.leader == endpoint and endpoint is not None

        await eventually(lambda: found(leader))
        assert await kept_alive(client, lease) > 0
        assert client.current == leader  # the leader answered the renewal

        three_members.member_at(leader).kill()
        assert await kept_alive(client, lease) > 0  # another member takes the renewals
        await eventually(lambda: (new := leading(three_members)) is not None and found(new), 30)
        assert client.leader != leader
    finally:
        await client.close()
