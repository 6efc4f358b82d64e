"""SQLite's own order rules under group commit, and a cancelled request's batch."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from conftest import FakeClock, new_changes

from jarvis_dns.models import Batch, InstanceSpec
from jarvis_dns.store.memory import MemoryStore
from jarvis_dns.store.sqlite import SqliteStore


def spec(svc: str, iid: int, **kw: object) -> InstanceSpec:
    return InstanceSpec(svc, iid, "127.0.0.1", 1000 + iid, **kw)  # type: ignore[arg-type]


async def test_a_delete_and_a_put_of_one_key_in_one_group_keep_their_order(
    tmp_path: Path,
) -> None:
    """Group commit must not reorder: put, delete, put of one key lands as the last put."""
    store = SqliteStore(tmp_path / "r.db")
    await store.load()
    first = await new_changes(FakeClock(), MemoryStore()).register(spec("svc", 1))
    inst = first[0]

    def put(port: int) -> Batch:
        return Batch(puts=[dataclasses.replace(inst, port=port)])

    await store.commit(put(1))
    await asyncio.gather(
        store.commit(put(2)),
        store.commit(Batch(deletes=[("svc", "1")])),
        store.commit(put(3)),
    )
    await store.close()
    kept = (await SqliteStore(tmp_path / "r.db").load()).instances
    assert [(i.key, i.port) for i in kept] == [("1", 3)]


async def test_a_cancelled_request_keeps_its_instance_locked_until_applied(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The next command on the instance plans on the view the cancelled one leaves."""
    store = SqliteStore(tmp_path / "r.db")
    changes = new_changes(clock, store)
    await changes.load()
    await changes.register(spec("svc", 1))
    update = asyncio.create_task(changes.register(spec("svc", 1, metadata={"v": 2})))
    await asyncio.sleep(0)  # planned and handed to the writer
    update.cancel()
    after = await changes.set_status("svc", 1, busy=True)
    assert after.metadata == {"v": 2} and after.busy  # planned after the update applied
    await store.close()
    kept = (await SqliteStore(tmp_path / "r.db").load()).instances
    assert kept[0].metadata == {"v": 2}
