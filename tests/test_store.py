"""One contract, every backend: what is committed comes back after a restart.

The same suite runs over memory://, sqlite:/// and etcd:// (a real single-member etcd,
one key prefix per test; tests/test_store_etcd.py has the cluster's own tests). SQLite
adds group commit (many batches, one transaction), liveness-class batches that answer
before their fsync, the schema migration of a file written by the previous release, and
a failing job that fails alone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import FakeClock, new_changes
from etcd_cluster import EtcdCluster, running

from jarvis_dns.changes import Changes
from jarvis_dns.errors import ConfigError, StoreError
from jarvis_dns.models import Batch, Check, EventKind, Instance, InstanceSpec, Status
from jarvis_dns.registry import EventLog
from jarvis_dns.store.base import Store
from jarvis_dns.store.etcd import EtcdStore
from jarvis_dns.store.memory import MemoryStore
from jarvis_dns.store.schema import SCHEMA_VERSION, version_of
from jarvis_dns.store.sqlite import WRITER_NICE, SqliteStore

Reopen = Callable[[], Awaitable[Changes]]
FIXTURES = Path(__file__).parent / "fixtures"


_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One real etcd member for the module's etcd cases (each uses its own prefix)."""
    with running(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture(params=["memory", "sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
async def reopen(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Reopen]:
    """A factory that 'restarts': closes the last store, opens it again, loads a view."""
    memory = MemoryStore(event_log_size=50)
    opened: list[Store] = []
    followers: list[asyncio.Task[None]] = []
    endpoints = request.getfixturevalue("etcd").endpoints if request.param == "etcd" else []
    prefix = f"/contract-{next(_prefixes)}"

    def open_store() -> Store:
        if request.param == "memory":
            return memory
        if request.param == "sqlite":
            return SqliteStore(tmp_path / "r.db", 50)
        return EtcdStore(endpoints, prefix, "jarvis", event_log_size=50)

    async def stop_following() -> None:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        followers.clear()

    async def make() -> Changes:
        if opened:
            await stop_following()
            await opened[-1].close()
        store = open_store()
        opened.append(store)
        changes = Changes(store, clock, events=EventLog(50))
        await changes.load()
        if store.echoes:  # a shared store's commits come back through its watch
            followers.append(asyncio.create_task(changes.follow()))
        return changes

    yield make
    await stop_following()
    await opened[-1].close()


def numbered(changes: Changes) -> bool:
    """Whether the store numbers batches 1, 2, 3 (memory, SQLite); etcd's revision also
    counts the key space's other writes (liveness, other prefixes), so there the suite
    checks indexes against the ones the first run saw."""
    return not changes.store.echoes


def spec(svc: str, iid: int | str, **kw: object) -> InstanceSpec:
    return InstanceSpec(svc, iid, "127.0.0.1", 1000 + len(str(iid)), **kw)  # type: ignore[arg-type]


async def test_everything_survives_a_restart(reopen: Reopen) -> None:
    changes = await reopen()
    check = Check(type="tcp", interval_s=5)
    meta = {"v": "1", "tags": ["a"]}
    await changes.register(InstanceSpec("auth", 1, "10.0.0.1", 5001, meta, check=check))
    await changes.register(InstanceSpec("auth", "blue", "::1", 5002, weight=7, ttl_s=12))
    await changes.register(InstanceSpec("db", 3, "db.local", 5432))
    await changes.set_status("auth", "blue", Status.MAINTENANCE)
    await changes.heartbeat("auth", 1, metrics={"load": 9})
    await changes.deregister("db", 3)
    deregistered = changes.view.index
    assert await changes.flush_liveness()

    again = await reopen()
    view = again.view
    assert view.index == changes.view.index == deregistered
    assert deregistered == 5 or not numbered(changes)
    one = view.get("auth", 1)
    assert one.metadata == meta and one.check == check
    assert one.metrics == {"load": 9}
    blue = view.get("auth", "blue")
    assert (blue.status, blue.weight, blue.ttl_s, blue.host) == (Status.MAINTENANCE, 7, 12, "::1")
    assert view.find("db", 3) is None
    assert view.service_index("db") == deregistered
    assert again.events.since(0) == changes.events.since(0)
    inst, _ = await again.register(spec("db", 4))
    assert inst.create_index > deregistered  # the index keeps growing, never reused
    assert inst.create_index == 6 or not numbered(changes)


async def test_busy_flips_and_check_state_survive(reopen: Reopen) -> None:
    changes = await reopen()
    await changes.register(spec("auth", 1))
    await changes.heartbeat("auth", 1, busy=True)  # liveness-class: written with the next group
    await changes.set_status("auth", 1, Status.DEAD)
    last = changes.view.index
    again = await reopen()
    inst = again.view.get("auth", 1)
    assert inst.busy and inst.status is Status.DEAD and inst.modify_index == last
    assert last == 3 or not numbered(changes)
    kinds = [e.kind for e in again.events.since(0)]
    assert kinds == [EventKind.REGISTERED, EventKind.BUSY, EventKind.DEAD]


async def test_event_log_stays_bounded(reopen: Reopen) -> None:
    changes = await reopen()
    for i in range(80):
        await changes.register(spec("auth", i))
    last = changes.view.index
    events = (await reopen()).events.since(0)
    assert len(events) == 50 and events[-1].index == last
    assert last == 80 or not numbered(changes)
    assert events[0].kind is EventKind.REGISTERED
    assert [e.instance_id for e in events] == list(range(30, 80))  # the newest 50


async def test_liveness_of_a_replaced_record_is_not_written(reopen: Reopen) -> None:
    """A liveness row taken before a full write must not undo it."""
    changes = await reopen()
    await changes.register(spec("auth", 1))
    await changes.heartbeat("auth", 1, metrics={"load": 1})
    stale = changes.liveness.drain()
    await changes.register(spec("auth", 1, metadata={"v": 2}))
    await changes.store.write_liveness(stale)
    again = await reopen()
    assert again.view.get("auth", 1).metadata == {"v": 2}
    assert again.view.get("auth", 1).metrics == {"load": 1}  # carried by the full write


# -- SQLite only ----------------------------------------------------------------


async def test_concurrent_commits_share_transactions(tmp_path: Path, clock: FakeClock) -> None:
    store = SqliteStore(tmp_path / "r.db")
    changes = new_changes(clock, store)
    await changes.load()
    groups: list[int] = []
    write = store._write

    def counting(group: list) -> list:  # type: ignore[type-arg]
        groups.append(len(group))
        return write(group)

    store._write = counting  # type: ignore[method-assign]
    await asyncio.gather(*(changes.register(spec(f"s{i % 7}", i)) for i in range(200)))
    assert changes.view.count() == 200 and changes.view.index == 200
    assert sum(groups) == 200 and len(groups) < 200  # group commit: fewer fsyncs than batches
    await store.close()
    again = SqliteStore(tmp_path / "r.db")
    assert len((await again.load()).instances) == 200
    await again.close()


def refuse(store: SqliteStore, statement: str, when: str = "") -> None:
    """A trigger stands in for a full disk: that statement on instances fails."""
    guard = f" WHEN {when}" if when else ""
    store._db.execute(
        f"CREATE TRIGGER refuse BEFORE {statement} ON instances{guard} "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )


async def test_a_failing_job_fails_alone(tmp_path: Path, clock: FakeClock) -> None:
    store = SqliteStore(tmp_path / "r.db")
    changes = new_changes(clock, store)
    await changes.load()
    await changes.register(spec("auth", 1))
    refuse(store, "INSERT", when="NEW.service_type = 'bad'")  # the rest of its group lands
    results = await asyncio.gather(
        changes.register(spec("good", 1)),
        changes.register(spec("bad", 1)),
        changes.register(spec("good", 2)),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreError) and "disk is full" in str(results[1])
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    assert changes.view.find("bad", 1) is None  # the view never saw it
    assert [i.instance_id for i in changes.view.instances("good")] == [1, 2]
    await store.close()
    kept = await SqliteStore(tmp_path / "r.db").load()
    assert sorted((i.service_type, i.key) for i in kept.instances) == [
        ("auth", "1"),
        ("good", "1"),
        ("good", "2"),
    ]


async def test_a_file_from_the_previous_release_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    shutil.copy(FIXTURES / "registry-v0.db", path)
    store = SqliteStore(path)
    snapshot = await store.load()
    await store.close()
    assert snapshot.index == 10
    by_key = {(i.service_type, i.key): i for i in snapshot.instances}
    assert set(by_key) == {
        ("auth", "1"),
        ("auth", "2"),
        ("auth", "blue"),
        ("api", "0"),
        ("api", "1"),
    }
    one = by_key[("auth", "1")]
    assert one.busy and one.metrics == {"load": 0.5} and one.metadata["tags"] == ["oauth"]
    assert by_key[("auth", "2")].metrics == {"load": 0.1}  # batched liveness kept
    assert by_key[("auth", "2")].metadata == {"capabilities": {"OAuth": True}}
    api = by_key[("api", "0")]
    assert api.status is Status.DEAD and api.check_output == "connection refused"
    assert api.check == Check(type="tcp", interval_s=30.0)
    assert by_key[("api", "1")].status is Status.MAINTENANCE
    assert [e.index for e in snapshot.events] == list(range(1, 11))
    assert snapshot.events[-1].kind is EventKind.DEREGISTERED
    assert snapshot.service_indexes["gone"] == 10
    assert_current_and_sound(path)


async def open_fixture(name: str, tmp_path: Path, clock: FakeClock) -> tuple[Path, Changes]:
    """A copy of fixtures/<name>, opened and loaded as app.py does."""
    path = tmp_path / "registry.db"
    shutil.copy(FIXTURES / name, path)
    changes = new_changes(clock, SqliteStore(path))
    await changes.load()
    return path, changes


def assert_current_and_sound(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        assert version_of(db) == SCHEMA_VERSION
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA index_list(instances)").fetchall() == []  # row is the key
    finally:
        db.close()


async def test_the_migrated_file_takes_new_writes(tmp_path: Path, clock: FakeClock) -> None:
    path, changes = await open_fixture("registry-v0.db", tmp_path, clock)
    store = changes.store
    inst, created = await changes.register(spec("auth", 9))
    assert created and inst.create_index == 11
    await store.close()
    again = await SqliteStore(path).load()
    assert again.index == 11 and len(again.events) == 11


async def test_a_file_from_schema_2_is_migrated(tmp_path: Path, clock: FakeClock) -> None:
    """registry-v2.db: made by the release before rowid-keyed instances (fixtures/README)."""
    path, changes = await open_fixture("registry-v2.db", tmp_path, clock)
    view = changes.view
    assert view.index == 7 and len(changes.events.since(0)) == 7
    assert sorted((i.service_type, i.key) for i in view.all_instances()) == [
        ("api", "0"),
        ("api", "1"),
        ("auth", "1"),
        ("auth", "blue"),
    ]
    one = view.get("auth", 1)
    assert one.metrics == {"load": 0.5} and one.last_heartbeat == 1_800_000_005.0
    assert one.metadata == {"tags": ["oauth"], "version": "1.2"}
    assert view.get("auth", "blue").busy
    assert view.get("api", 0).status is Status.DEAD
    assert view.get("api", 1).status is Status.MAINTENANCE
    assert view.service_index("gone") == 7
    await changes.heartbeat("auth", 1, metrics={"load": 0.7})
    await changes.flush_liveness()
    await changes.deregister("api", 1)
    inst, created = await changes.register(spec("api", 1))
    assert created and inst.create_index == 9
    await changes.store.close()
    assert_current_and_sound(path)
    again = await SqliteStore(path).load()
    assert len(again.instances) == 4 and again.index == 9
    assert next(
        i for i in again.instances if i.key == "1" and i.service_type == "auth"
    ).metrics == {"load": 0.7}


def bare(svc: str, host: str) -> Instance:
    """Instance 1 of svc, as a plan would make it (for a store driven without Changes)."""
    return Instance(
        svc, 1, host, 80, {}, 100, False, Status.ACTIVE, 30.0, None, None, 1.0, 1.0, 1.0
    )


def rows_of(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT service_type, instance_key FROM instances ORDER BY 1, 2"
        ).fetchall()
    finally:
        db.close()


async def test_a_failed_deregistration_leaves_one_row(tmp_path: Path, clock: FakeClock) -> None:
    """A delete the disk refused keeps its row, and the instance keeps that row: a later
    update and deregistration remove it for good (no stale copy comes back on restart)."""
    store = SqliteStore(tmp_path / "r.db")
    changes = new_changes(clock, store)
    await changes.load()
    await changes.register(spec("auth", 1))
    refuse(store, "DELETE")
    with pytest.raises(StoreError, match="disk is full"):
        await changes.deregister("auth", 1)
    assert changes.view.find("auth", 1) is not None  # the view never saw it
    store._db.execute("DROP TRIGGER refuse")
    await changes.register(spec("auth", 1, metadata={"v": 2}))
    await changes.deregister("auth", 1)
    await store.close()
    assert rows_of(tmp_path / "r.db") == []
    assert (await SqliteStore(tmp_path / "r.db").load()).instances == []


async def test_a_put_after_a_failed_delete_takes_its_row_alone(tmp_path: Path) -> None:
    """Two commits in flight on one key (no Changes lock between them): the delete fails,
    the put lands on a new row; the old row goes with the next write."""
    store = SqliteStore(tmp_path / "r.db")
    await store.load()
    await store.commit(Batch(puts=[bare("auth", "10.0.0.1")]))
    refuse(store, "DELETE")
    deleting = store.commit(Batch(deletes=[("auth", "1")]))
    putting = store.commit(Batch(puts=[bare("auth", "10.0.0.2")]))
    with pytest.raises(StoreError, match="disk is full"):
        await deleting
    await putting
    assert sorted(rows_of(tmp_path / "r.db")) == [("auth", "1"), ("auth", "1")]
    kept = await SqliteStore(tmp_path / "r.db").load()  # of the two, the newer row
    assert [i.host for i in kept.instances] == ["10.0.0.2"]
    store._db.execute("DROP TRIGGER refuse")
    await store.commit(Batch(puts=[bare("api", "10.0.0.3")]))
    await store.close()
    assert rows_of(tmp_path / "r.db") == [("api", "1"), ("auth", "1")]


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match="newer jarvis-dns"):
        SqliteStore(path)


async def test_sqlite_file_is_wal(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    await store.close()
    assert mode == "wal"


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
async def test_sqlite_writer_runs_below_the_loop(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    await store.commit(Batch(puts=[bare("auth", "10.0.0.1")]))
    writer = next(t for t in threading.enumerate() if t.name == "sqlite writer")
    assert writer.native_id is not None
    niceness = os.getpriority(os.PRIO_PROCESS, writer.native_id)
    await store.close()
    loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness == min(19, loop_niceness + WRITER_NICE)
