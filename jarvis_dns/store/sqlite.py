"""sqlite:///path — the embedded, durable default (WAL, synchronous=FULL), group commit.

One writer thread owns the connection. ``commit`` numbers the batch on the event loop,
encodes it there (the loop keeps changing the view's objects, so the thread never sees
them) and queues it; the thread takes every job queued while its previous transaction
was in flight and commits them all in one transaction with one fsync. Each job has its
own savepoint, so a job that fails (disk full, say) fails alone, and only the jobs
that landed are answered as landed. The event loop never waits on a lock or an fsync:
it awaits a future the thread settles.

A liveness row applies only while the stored record is the one it was taken from (same
modify_index): a full write that landed in between wins. Liveness flushes go in chunks
of LIVENESS_CHUNK rows, so a registration waits behind one chunk at most.

Instances are keyed by a row number this store hands out and keeps in memory (``Rows``),
not by an index on (service type, id) that would cost a random page per registration
(schema.py, version 3). A new instance takes the next number, so new rows append; a
deleted one gives its number up. Should a delete fail (disk full), its number comes
back; if a later put took a new number meanwhile, the old row is deleted with the next
job, so a key never has two rows for long, and load() keeps the newest of any two.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jarvis_dns import jsontext
from jarvis_dns.errors import ConfigError, StoreError
from jarvis_dns.models import Batch, Event, Instance, Key, LivenessRow, Snapshot
from jarvis_dns.registry.apply import stamp
from jarvis_dns.registry.plan import Touch
from jarvis_dns.store.base import no_changes
from jarvis_dns.store.schema import migrate
from jarvis_dns.turns import in_turns

log = logging.getLogger("jarvis_dns.store")

# How much lower the writer thread's CPU priority is than the loop's (nice, 0-19): on
# a slow VM a registration flood's DNS lag p50 went from 1.2-1.3 ms to 0.7-0.8 at 10,
# with the same registrations a second.
WRITER_NICE = 10
# Rows per liveness job, looked up in one turn of the loop: a registration queued
# behind a flush waits for one chunk (1,000 held the loop up to 10 ms on a slow VM).
LIVENESS_CHUNK = 250
# A group stops growing past this many rows, so one transaction stays short.
GROUP_ROWS = 4000
# How long the writer waits for more jobs after the first durable one of a group.
LINGER_S = 0.001
# How long a group of only liveness-class jobs (busy flips: nobody awaits them) waits
# for more, in LINGER_S steps; a durable job arriving cuts it short.
LIVENESS_LINGER_S = 0.05
# Waiters answered per pass of the event loop (see _settle): each resumes its request
# (apply, answer) in the next pass. Paired 10 s registration floods on a slow VM held
# DNS p99 4.9-6.4 ms at 4 against 5.3-9.2 at 8.
SETTLE_CHUNK = 4


@dataclass(slots=True)
class _Job:
    """One unit the writer thread commits under its own savepoint."""

    upserts: list[tuple[int, str, str, str, int]] = field(default_factory=list)
    deletes: list[tuple[int]] = field(default_factory=list)  # rows
    deleted: list[tuple[Key, int]] = field(default_factory=list)  # the keys they held
    orphans: list[int] = field(default_factory=list)  # rows of no key (in deletes too)
    services: list[tuple[str, int]] = field(default_factory=list)
    events: list[tuple[int, int, str]] = field(default_factory=list)
    liveness: Sequence[tuple[LivenessRow, int]] = ()  # with the instance's row
    index: int = 0
    durable: bool = True
    future: asyncio.Future[int] | None = None  # settled with index once written

    @property
    def size(self) -> int:
        return len(self.upserts) + len(self.deletes) + len(self.events) + len(self.liveness)

    def write(self, db: sqlite3.Connection) -> None:
        if self.upserts:
            db.executemany(_UPSERT_INSTANCE, self.upserts)
        if self.deletes:
            db.executemany(_DELETE_INSTANCE, self.deletes)
        if self.services:
            db.executemany(_UPSERT_SERVICE, self.services)
        if self.events:
            db.executemany(_INSERT_EVENT, self.events)
        if self.liveness:
            db.executemany(_UPDATE_LIVENESS, [_liveness_row(*r) for r in self.liveness])
        if self.index:
            db.execute(_SET_INDEX, (self.index,))


class Rows:
    """Which row of the instances table holds each instance (the table's key), kept on
    the event loop in commit order: the writer thread only ever sees numbers."""

    def __init__(self) -> None:
        self._of: dict[Key, int] = {}
        self._next = 1
        self.orphans: list[int] = []  # rows no key points to any more, still to delete

    def add(self, key: Key, row: int) -> None:
        """A row read from the file; of two for one key, the later add wins."""
        old = self._of.get(key)
        if old is not None:
            self.orphans.append(old)
        self._of[key] = row
        self._next = max(self._next, row + 1)

    def put(self, key: Key) -> int:
        row = self._of.get(key)
        if row is None:
            row = self._of[key] = self._next
            self._next += 1
        return row

    def get(self, key: Key) -> int | None:
        return self._of.get(key)

    def delete(self, key: Key) -> int | None:
        return self._of.pop(key, None)

    def undelete(self, key: Key, row: int) -> None:
        """A delete that failed: the row is still in the file."""
        if self._of.get(key, row) == row:
            self._of[key] = row
        else:  # a put took a new row meanwhile: this one goes with the next job
            self.orphans.append(row)


def _encode(batch: Batch, rows: Rows) -> _Job:
    index = batch.index
    job = _Job(
        upserts=[
            (rows.put((i.service_type, i.key)), i.service_type, i.key, i.to_json(), index)
            for i in batch.puts
        ],
        services=[(svc, index) for svc in batch.services()],
        events=[(index, seq, _dump_event(e)) for seq, e in enumerate(batch.events)],
        index=index,
        durable=batch.durable,
    )
    for key in batch.deletes:
        row = rows.delete(key)
        if row is not None:
            job.deleted.append((key, row))
            job.deletes.append((row,))
    if rows.orphans:
        job.orphans, rows.orphans = rows.orphans, []
        job.deletes += [(row,) for row in job.orphans]
    return job


class SqliteStore:
    echoes = False  # one node writes it: Changes applies its own commits

    def __init__(self, path: str | Path, event_log_size: int = 10_000) -> None:
        self.path = Path(path)
        self._event_log_size = event_log_size
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = _connect(self.path)
            migrate(self._db)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the store at {self.path}: {exc}") from exc
        self._index = int(row[0]) if row else 0
        self._trim_below = self._index - event_log_size  # events at or below it go
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._synced = True  # synchronous=FULL (every commit fsynced), as _connect sets
        self._rows: Rows | None = None  # filled by load() (or the first write)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the Store protocol ----------------------------------------------------

    async def load(self) -> Snapshot:
        if self._thread is not None:
            raise StoreError("load() runs once, before the first commit")
        return await asyncio.to_thread(self._load)

    def commit(self, batch: Batch) -> asyncio.Future[int]:
        """A future, not a coroutine: the writer thread settles it (with the index) once
        the batch is on disk, and the caller needs no task to wait for it. Numbered and
        encoded here, on the loop: indexes follow call order."""
        self._index += 1
        self._trim_below = self._index - self._event_log_size
        stamp(batch, self._index)
        future = self._submit(_encode(batch, self._row_map()))
        if batch.durable:
            return future
        done = asyncio.get_running_loop().create_future()  # not waiting for the disk
        done.set_result(batch.index)
        return done

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None:
        where = self._row_map()
        futures = []
        async for chunk in in_turns(rows, LIVENESS_CHUNK):
            found = [(r, n) for r in chunk if (n := where.get((r.service_type, r.key))) is not None]
            futures.append(self._submit(_Job(liveness=found)))
        for future in futures:
            await future

    def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]:
        return no_changes(from_index)

    async def latest_index(self) -> int:
        return self._index

    def status(self) -> dict[str, object]:
        return {"backend": "sqlite", "state": "ok", "path": str(self.path)}

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._db.close()

    # -- the writer thread -----------------------------------------------------

    def _submit(self, job: _Job) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._loop = loop
            self._thread = threading.Thread(target=self._run, name="sqlite writer", daemon=True)
            self._thread.start()
        job.future = loop.create_future()
        if not job.durable:  # nobody awaits it: a failure is logged, never left unread
            job.future.add_done_callback(_log_lost)
        self._queue.put(job)
        return job.future

    def _run(self) -> None:
        _yield_to_the_loop()
        while True:
            job = self._queue.get()
            if job is None:
                return
            group, stop = self._gather(job)
            errors = self._write(group)
            assert self._loop is not None and self._rows is not None  # set before the start
            self._loop.call_soon_threadsafe(_settle, group, errors, self._rows)
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job and every one queued meanwhile, up to GROUP_ROWS rows."""
        group, rows = [first], first.size
        durable, waited = first.durable, 0.0
        while rows < GROUP_ROWS:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                # A durable write waits for its fsync anyway: LINGER_S more lets the loop
                # queue the writes arriving meanwhile, so a flood shares one transaction
                # instead of paying a thread hand-off and an fsync per one or two. Busy
                # flips nobody awaits wait longer: at a thousand a second they share a
                # transaction (and one wake-up of the loop) instead of paying one each.
                if waited >= (LINGER_S if durable else LIVENESS_LINGER_S):
                    break
                time.sleep(LINGER_S)
                waited += LINGER_S
                continue
            if job is None:
                return group, True
            group.append(job)
            rows += job.size
            durable = durable or job.durable
        return group, False

    def _write(self, group: list[_Job]) -> list[sqlite3.Error | None]:
        """The whole group in one transaction. First as one merged job (a few statements
        for any number of batches); if that fails, again job by job, each under its own
        savepoint, so only the jobs that cannot land fail. A group of liveness-class jobs
        only is not fsynced: the WAL's next fsync (any durable write, or a checkpoint)
        takes it along, and a crash of the process alone loses none of it."""
        durable = any(job.durable for job in group)
        if durable != self._synced:
            self._db.execute(_SYNCHRONOUS[durable])
            self._synced = durable
        merged = _merge(group)
        if merged is not None:
            one = merged
            if self._transaction(lambda db: [_in_savepoint(db, one)]) == [None]:
                return [None] * len(group)
        return self._transaction(lambda db: [_in_savepoint(db, job) for job in group], len(group))

    def _transaction(
        self, body: Callable[[sqlite3.Connection], list[sqlite3.Error | None]], jobs: int = 1
    ) -> list[sqlite3.Error | None]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            errors = body(db)
            db.execute(_TRIM_EVENTS, (self._trim_below,))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:  # a failed COMMIT can leave it open: never leave it so
                db.execute("ROLLBACK")
            return [exc] * jobs
        return errors

    def _row_map(self) -> Rows:
        """The rows of the instances in the file; read here only when no load() did,
        before the writer thread has the connection."""
        if self._rows is None:
            self._rows = Rows()
            for row, svc, key in self._db.execute(_SELECT_ROWS):
                self._rows.add((svc, key), row)
        return self._rows

    def _load(self) -> Snapshot:
        db = self._db
        self._rows = Rows()
        by_key: dict[Key, Instance] = {}
        for row, svc, key, *stored in db.execute(_SELECT_INSTANCES):
            self._rows.add((svc, key), row)  # of two rows for a key, the later one
            by_key[(svc, key)] = _restore(stored)
        instances = list(by_key.values())
        events = [Event.from_dict(jsontext.decode(d)) for (d,) in db.execute(_SELECT_EVENTS)]
        services = dict(db.execute("SELECT service_type, idx FROM services").fetchall())
        return Snapshot(instances, events, self._index, services)


def _merge(group: list[_Job]) -> _Job | None:
    """The group as one job: its statements run by kind (every upsert, then every
    delete, ...), so merging is only right when no row is both put and deleted in the
    group; None then, and the jobs are written one by one, in order."""
    if len(group) == 1:
        return group[0]
    deleted = {row for job in group for (row,) in job.deletes}
    if deleted and any(up[0] in deleted for job in group for up in job.upserts):
        return None
    merged = _Job(liveness=[row for job in group for row in job.liveness])
    for job in group:
        merged.upserts += job.upserts
        merged.deletes += job.deletes
        merged.services += job.services
        merged.events += job.events
        merged.index = max(merged.index, job.index)
    return merged


def _in_savepoint(db: sqlite3.Connection, job: _Job) -> sqlite3.Error | None:
    db.execute("SAVEPOINT job")
    try:
        job.write(db)
    except sqlite3.Error as exc:
        db.execute("ROLLBACK TO job")
        db.execute("RELEASE job")
        return exc
    db.execute("RELEASE job")
    return None


def _yield_to_the_loop() -> None:
    """Lower this (the writer's) thread's CPU priority by WRITER_NICE. It shares the
    loop's core; a group's statements, run when the loop also has work, otherwise hold
    the loop (and every DNS answer) off the core for the scheduler's slice. Its work is
    never urgent: each request waits for its own commit, so the loop cannot run ahead.
    Linux gives each thread its own nice value; elsewhere this does nothing."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WRITER_NICE)
    except OSError as exc:  # a sandbox that forbids it: run at the loop's priority
        log.warning("could not lower the SQLite writer's priority: %s", exc)


def _settle(group: list[_Job], errors: list[sqlite3.Error | None], rows: Rows) -> None:
    """On the loop: answer each job's waiter, SETTLE_CHUNK at a time. Every answered
    waiter resumes its request in the loop's next pass, and a pass runs all it has
    before it looks at sockets again: a group of a hundred would keep DNS waiting for
    all of them. A few per pass lets queries in between."""
    if len(group) > SETTLE_CHUNK:
        rest = group[SETTLE_CHUNK:], errors[SETTLE_CHUNK:]
        asyncio.get_running_loop().call_soon(_settle, *rest, rows)
        group, errors = group[:SETTLE_CHUNK], errors[:SETTLE_CHUNK]
    for job, error in zip(group, errors, strict=True):
        if error is not None:  # its deletes did not happen: their rows are still there
            for key, row in job.deleted:
                rows.undelete(key, row)
            rows.orphans += job.orphans
        future = job.future
        if future is None or future.done():  # its waiter went away
            continue
        if error is None:
            future.set_result(job.index)
        else:
            future.set_exception(StoreError(f"sqlite write failed: {error}"))


def _log_lost(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a liveness-class batch was not written: %s", future.exception())


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    # A statement that may have to undo itself (INSERT OR REPLACE, inside a savepoint)
    # keeps a statement journal: on disk that is a temp file created, written and
    # unlinked per transaction, about half the writer's system time per registration.
    db.execute("PRAGMA temp_store=MEMORY")
    return db


def _dump_event(event: Event) -> str:
    return jsontext.encode(event.to_dict())


def _liveness_row(r: LivenessRow, row: int) -> tuple[float, str, str, int, int]:
    return (r.last_heartbeat, jsontext.encode(r.metrics), r.check_output, row, r.modify_index)


def _restore(row: tuple[str, float | None, str | None, str | None]) -> Instance:
    data, last_heartbeat, metrics, check_output = row
    inst = Instance.from_dict(jsontext.decode(data))
    if last_heartbeat is not None:  # written after the last full write (which clears it)
        inst.last_heartbeat = last_heartbeat
        inst.metrics = jsontext.decode(metrics) if metrics else {}
        inst.check_output = check_output or ""
    return inst


_SYNCHRONOUS = {True: "PRAGMA synchronous=FULL", False: "PRAGMA synchronous=NORMAL"}
_SELECT_INSTANCES = (
    "SELECT row, service_type, instance_key, data, last_heartbeat, metrics, check_output "
    "FROM instances ORDER BY row"
)
_SELECT_ROWS = "SELECT row, service_type, instance_key FROM instances ORDER BY row"
_SELECT_EVENTS = "SELECT data FROM events ORDER BY idx, seq"
# A full write supersedes batched liveness: clear those columns with it.
_UPSERT_INSTANCE = (
    "INSERT OR REPLACE INTO instances (row, service_type, instance_key, data, last_heartbeat, "
    "modify_index) VALUES (?, ?, ?, ?, NULL, ?)"
)
_UPDATE_LIVENESS = (
    "UPDATE instances SET last_heartbeat = ?, metrics = ?, check_output = ? "
    "WHERE row = ? AND modify_index = ?"
)
_DELETE_INSTANCE = "DELETE FROM instances WHERE row = ?"
_UPSERT_SERVICE = "INSERT OR REPLACE INTO services (service_type, idx) VALUES (?, ?)"
_INSERT_EVENT = "INSERT OR REPLACE INTO events (idx, seq, data) VALUES (?, ?, ?)"
_TRIM_EVENTS = "DELETE FROM events WHERE idx <= ?"
_SET_INDEX = (
    "INSERT INTO meta (key, value) VALUES ('index', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), excluded.value)"
)
