"""Cluster membership and the leader on a real etcd: announce, see each other, elect one
leader, hand the leadership and the departed node's checks over within one node TTL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from conftest import eventually
from etcd_cluster import EtcdCluster, running

from jarvis_dns.cluster import owner
from jarvis_dns.store.etcd_api import EtcdClient
from jarvis_dns.store.etcd_nodes import EtcdNodes

pytestmark = pytest.mark.etcd
_prefixes = itertools.count(1)
TTL_S = 2.0


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with running(tmp_path_factory.mktemp("etcd-nodes")) as cluster:
        yield cluster


def nodes(etcd: EtcdCluster, names: list[str]) -> list[EtcdNodes]:
    root = f"/nodes-test-{next(_prefixes)}/jarvis/"
    return [EtcdNodes(EtcdClient(etcd.endpoints), root, n, TTL_S) for n in names]


async def stop(*members: EtcdNodes) -> None:
    for member in members:
        await member.stop()
        await member._client.close()


async def test_nodes_see_each_other_and_agree_on_one_leader(etcd: EtcdCluster) -> None:
    a, b, c = nodes(etcd, ["a", "b", "c"])
    changed: list[str] = []
    a.on_change(lambda: changed.append("a"))
    try:
        await asyncio.gather(a.start(), b.start(), c.start())
        await eventually(lambda: all(list(n.members) == ["a", "b", "c"] for n in (a, b, c)))
        assert len({n.leader for n in (a, b, c)}) == 1
        assert sum(n.leading for n in (a, b, c)) == 1
        key = ("svc", "7")
        assert [n.owns(key) for n in (a, b, c)].count(True) == 1
        assert changed  # a heard the others arrive
    finally:
        await stop(a, b, c)


async def test_a_leaving_node_hands_over_its_checks_and_its_leadership(
    etcd: EtcdCluster,
) -> None:
    a, b, c = nodes(etcd, ["a", "b", "c"])
    try:
        await a.start()  # first: a leads
        await asyncio.gather(b.start(), c.start())
        await eventually(lambda: all(len(n.members) == 3 for n in (a, b, c)))
        assert a.leading and b.leader == c.leader == "a"
        keys = [("svc", str(i)) for i in range(60)]
        a_share = [k for k in keys if owner(k, ["a", "b", "c"]) == "a"]
        assert a_share
        await a.stop()  # revokes its lease: gone at once
        await eventually(lambda: list(b.members) == list(c.members) == ["b", "c"])
        await eventually(lambda: b.leader == c.leader and b.leader in ("b", "c"))
        assert all(b.owns(k) or c.owns(k) for k in a_share)
    finally:
        await stop(a, b, c)


async def test_a_node_that_dies_without_leaving_is_gone_within_its_ttl(
    etcd: EtcdCluster,
) -> None:
    a, b = nodes(etcd, ["a", "b"])
    try:
        await asyncio.gather(a.start(), b.start())
        await eventually(lambda: len(b.members) == 2)
        for task in a._tasks:  # a stops renewing, as a killed process would
            task.cancel()
        loop = asyncio.get_running_loop()
        began = loop.time()
        await eventually(lambda: list(b.members) == ["b"], timeout=3 * TTL_S)
        assert loop.time() - began <= TTL_S + 1.5  # etcd's lease granularity
        await eventually(lambda: b.leading)
    finally:
        a._lease = 0
        await stop(a, b)
