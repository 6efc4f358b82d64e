"""One contract, every backend: what is written comes back after a restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import FakeClock

from jarvis_dns.models import Check, EventKind, InstanceSpec, Status
from jarvis_dns.registry import Registry
from jarvis_dns.store.base import Store
from jarvis_dns.store.memory import MemoryStore
from jarvis_dns.store.sqlite import SqliteStore

Reopen = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    """A factory that 'restarts' the store: same data, new object where it matters."""
    opened: list[Store] = []
    memory = MemoryStore(event_log_size=50)

    def make() -> Store:
        store: Store = memory if request.param == "memory" else SqliteStore(tmp_path / "r.db", 50)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _registry(store: Store, clock: FakeClock) -> Registry:
    reg = Registry(clock, journal=store, event_log_size=50)
    reg.restore(store.load())
    return reg


def test_everything_survives_a_restart(reopen: Reopen, clock: FakeClock) -> None:
    store = reopen()
    reg = _registry(store, clock)
    check = Check(type="tcp", interval_s=5)
    reg.register(InstanceSpec("auth", 1, "10.0.0.1", 5001, {"v": "1", "tags": ["a"]}, check=check))
    reg.register(InstanceSpec("auth", "blue", "::1", 5002, weight=7, ttl_s=12))
    reg.register(InstanceSpec("db", 3, "db.local", 5432))
    reg.set_status("auth", "blue", Status.MAINTENANCE)
    reg.heartbeat("auth", 1, metrics={"load": 9})
    reg.deregister("db", 3)
    store.write_liveness(reg.drain_dirty())
    store.close()

    again = _registry(reopen(), clock)
    assert again.index == reg.index == 5
    one = again.get("auth", 1)
    assert one.metadata == {"v": "1", "tags": ["a"]} and one.check == check
    assert one.metrics == {"load": 9}
    blue = again.get("auth", "blue")
    assert (blue.status, blue.weight, blue.ttl_s, blue.host) == (Status.MAINTENANCE, 7, 12, "::1")
    assert again.find("db", 3) is None
    assert again.service_index("db") == 5
    assert [e.kind for e in again.events_since(0)] == [e.kind for e in reg.events_since(0)]
    inst, _ = again.register(InstanceSpec("db", 4, "127.0.0.1", 1))
    assert inst.create_index == 6  # the index keeps growing, never reused


def test_event_log_stays_bounded_on_disk(reopen: Reopen, clock: FakeClock) -> None:
    store = reopen()
    reg = _registry(store, clock)
    for i in range(80):
        reg.register(InstanceSpec("auth", i, "127.0.0.1", 1000 + i))
    store.close()
    events = reopen().load().events
    assert len(events) == 50 and events[-1].index == 80
    assert events[0].kind is EventKind.REGISTERED


def test_sqlite_file_is_wal(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    store.close()
    assert mode == "wal"
