"""sqlite:///path — the embedded, durable default (WAL mode).

Registrations, status changes and deletes commit with synchronous=FULL, so they are on
disk before the HTTP answer goes out. Heartbeat timestamps, metrics and check output
arrive in batches from the app's flusher, which runs write_liveness in a worker thread
on a second connection, in small transactions so a registration on the event loop
never waits long for the write lock. A liveness row applies only while the stored
record is the one it was taken from (same modify_index): a full write that landed in
between wins.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from jarvis_dns.errors import ConfigError, StoreError
from jarvis_dns.models import Batch, Event, Instance, Snapshot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    service_type TEXT NOT NULL,
    instance_key TEXT NOT NULL,
    data TEXT NOT NULL,
    -- liveness, written in batches apart from data so a heartbeat never re-encodes it
    last_heartbeat REAL,
    metrics TEXT,
    check_output TEXT,
    modify_index INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service_type, instance_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (idx INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (service_type TEXT PRIMARY KEY, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _dump(inst: Instance) -> str:
    return json.dumps(inst.to_dict(), separators=(",", ":"))


class SqliteStore:
    def __init__(self, path: str | Path, event_log_size: int = 10_000) -> None:
        self.path = Path(path)
        self._event_log_size = event_log_size
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.executescript(_SCHEMA)
            self._liveness_db = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the store at {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")  # the two connections take turns writing
        return db

    def load(self) -> Snapshot:
        db = self._db
        instances = [_restore(row) for row in db.execute(_SELECT_INSTANCES)]
        events = [Event.from_dict(json.loads(d)) for (d,) in db.execute(_SELECT_EVENTS)]
        services = dict(db.execute("SELECT service_type, idx FROM services").fetchall())
        row = db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
        return Snapshot(instances, events, int(row[0]) if row else 0, services)

    def write(self, batch: Batch) -> None:
        try:
            self._transaction(lambda: self._apply(batch))
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite write failed: {exc}") from exc

    def write_liveness(self, instances: Sequence[Instance]) -> None:
        """Thread-safe against write(): it uses its own connection."""
        db = self._liveness_db
        for start in range(0, len(instances), LIVENESS_CHUNK):
            rows = [_liveness_row(i) for i in instances[start : start + LIVENESS_CHUNK]]
            try:
                _transaction(db, partial(db.executemany, _UPDATE_LIVENESS, rows))
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite liveness flush failed: {exc}") from exc

    def close(self) -> None:
        self._liveness_db.close()
        self._db.close()

    def _transaction(self, body: Callable[[], object]) -> None:
        _transaction(self._db, body)

    def _apply(self, batch: Batch) -> None:
        db = self._db
        db.executemany(
            _UPSERT_INSTANCE,
            [(i.service_type, i.key, _dump(i), i.modify_index) for i in batch.puts],
        )
        db.executemany(_DELETE_INSTANCE, batch.deletes)
        touched = {i.service_type for i in batch.puts} | {svc for svc, _ in batch.deletes}
        db.executemany(_UPSERT_SERVICE, [(svc, batch.index) for svc in touched])
        db.executemany(
            "INSERT OR REPLACE INTO events (idx, data) VALUES (?, ?)",
            [(e.index, json.dumps(e.to_dict())) for e in batch.events],
        )
        db.execute("DELETE FROM events WHERE idx <= ?", (batch.index - self._event_log_size,))
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('index', ?)", (batch.index,))


def _transaction(db: sqlite3.Connection, body: Callable[[], object]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        body()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a failed COMMIT can leave it open: never leave it so
            db.execute("ROLLBACK")
        raise


def _liveness_row(i: Instance) -> tuple[float, str, str, str, str, int]:
    metrics = json.dumps(i.metrics)
    return (i.last_heartbeat, metrics, i.check_output, i.service_type, i.key, i.modify_index)


def _restore(row: tuple[str, float | None, str | None, str | None]) -> Instance:
    data, last_heartbeat, metrics, check_output = row
    inst = Instance.from_dict(json.loads(data))
    if last_heartbeat is not None:  # written after the last full write (which clears it)
        inst.last_heartbeat = last_heartbeat
        inst.metrics = json.loads(metrics) if metrics else {}
        inst.check_output = check_output or ""
    return inst


_SELECT_INSTANCES = "SELECT data, last_heartbeat, metrics, check_output FROM instances"
_SELECT_EVENTS = "SELECT data FROM events ORDER BY idx"
# A full write supersedes batched liveness: clear those columns with it.
_UPSERT_INSTANCE = (
    "INSERT OR REPLACE INTO instances "
    "(service_type, instance_key, data, last_heartbeat, modify_index) VALUES (?, ?, ?, NULL, ?)"
)
_UPDATE_LIVENESS = (
    "UPDATE instances SET last_heartbeat = ?, metrics = ?, check_output = ? "
    "WHERE service_type = ? AND instance_key = ? AND modify_index = ?"
)
# Rows per liveness transaction: a registration waits for at most one such chunk.
LIVENESS_CHUNK = 1000
_DELETE_INSTANCE = "DELETE FROM instances WHERE service_type = ? AND instance_key = ?"
_UPSERT_SERVICE = "INSERT OR REPLACE INTO services (service_type, idx) VALUES (?, ?)"
