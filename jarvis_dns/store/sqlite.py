"""sqlite:///path — the embedded, durable default (WAL mode).

Registrations, status changes and deletes commit with synchronous=FULL, so they are on
disk before the HTTP answer goes out. Heartbeat timestamps arrive in batches from the
app's flusher and share one transaction per batch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from jarvis_dns.errors import ConfigError, StoreError
from jarvis_dns.models import Batch, Event, Instance, Snapshot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    service_type TEXT NOT NULL,
    instance_key TEXT NOT NULL,
    data TEXT NOT NULL,
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
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the store at {self.path}: {exc}") from exc

    def load(self) -> Snapshot:
        db = self._db
        instances = [Instance.from_dict(json.loads(d)) for (d,) in db.execute(_SELECT_INSTANCES)]
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
        rows = [(_dump(i), i.service_type, i.key) for i in instances]
        try:
            self._transaction(lambda: self._db.executemany(_UPDATE_INSTANCE, rows))
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite liveness flush failed: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _transaction(self, body: Callable[[], object]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            body()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _apply(self, batch: Batch) -> None:
        db = self._db
        db.executemany(_UPSERT_INSTANCE, [(i.service_type, i.key, _dump(i)) for i in batch.puts])
        db.executemany(_DELETE_INSTANCE, batch.deletes)
        touched = {i.service_type for i in batch.puts} | {svc for svc, _ in batch.deletes}
        db.executemany(_UPSERT_SERVICE, [(svc, batch.index) for svc in touched])
        db.executemany(
            "INSERT OR REPLACE INTO events (idx, data) VALUES (?, ?)",
            [(e.index, json.dumps(e.to_dict())) for e in batch.events],
        )
        db.execute("DELETE FROM events WHERE idx <= ?", (batch.index - self._event_log_size,))
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('index', ?)", (batch.index,))


_SELECT_INSTANCES = "SELECT data FROM instances"
_SELECT_EVENTS = "SELECT data FROM events ORDER BY idx"
_UPSERT_INSTANCE = (
    "INSERT OR REPLACE INTO instances (service_type, instance_key, data) VALUES (?, ?, ?)"
)
_UPDATE_INSTANCE = "UPDATE instances SET data = ? WHERE service_type = ? AND instance_key = ?"
_DELETE_INSTANCE = "DELETE FROM instances WHERE service_type = ? AND instance_key = ?"
_UPSERT_SERVICE = "INSERT OR REPLACE INTO services (service_type, idx) VALUES (?, ?)"
