"""The SQLite schema and its migrations, versioned by ``PRAGMA user_version``.

Version 0 is the file every release before the async change path wrote (it set no
version). Version 1:
* numbers events per batch: one batch, one index, so several events may share an index
  and the events table is keyed by (idx, seq);
* keeps instances and events in ordinary rowid tables: their rows (JSON of about half a
  kilobyte) are too large for WITHOUT ROWID, which made every write about twice as
  expensive (measured: 99 vs 47 us of CPU per registration).
Version 2 adds ``acl_tokens`` (accessor -> JSON with the secret's SHA-256, never the
secret), read and written by store/tokens.py on its own connection.
Version 3 keys instances by a row number the store hands out (``row``), with no index on
(service_type, instance_key): the store keeps that map in memory. The unique index took
one random page of the file per registration (an instance's id says nothing about where
it sorts), about half the writer's system time; new rows now append.

A migration runs once, in one transaction, on first start of a newer release; a file
from a newer release than this one is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from jarvis_dns.errors import ConfigError

SCHEMA_VERSION = 3

_TABLES = """
CREATE TABLE IF NOT EXISTS instances (
    row INTEGER PRIMARY KEY,  -- the store's own number, one per (service_type, instance_key)
    service_type TEXT NOT NULL,
    instance_key TEXT NOT NULL,
    data TEXT NOT NULL,
    -- liveness, written in batches apart from data so a heartbeat never re-encodes it
    last_heartbeat REAL,
    metrics TEXT,
    check_output TEXT,
    modify_index INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    idx INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (idx, seq)
);
CREATE TABLE IF NOT EXISTS services (service_type TEXT PRIMARY KEY, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acl_tokens (accessor TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


def _v0_to_v1(db: sqlite3.Connection) -> None:
    """Both big tables move to rowid tables; each old event keeps its idx, with seq 0."""
    db.execute("ALTER TABLE instances RENAME TO instances_v0")
    db.execute("ALTER TABLE events RENAME TO events_v0")
    _create_tables(db)
    db.execute(f"INSERT INTO instances ({_COLUMNS}) SELECT {_COLUMNS} FROM instances_v0")
    db.execute("INSERT INTO events (idx, seq, data) SELECT idx, 0, data FROM events_v0")
    db.execute("DROP TABLE instances_v0")
    db.execute("DROP TABLE events_v0")


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in _TABLES.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """A new table only (ACL tokens); nothing else moves."""
    _create_tables(db)


def _v2_to_v3(db: sqlite3.Connection) -> None:
    """Instances keep their rowid as their row; the (service_type, instance_key) index
    goes. A file that came through _v0_to_v1 above has the new table already."""
    columns = {name for _, name, *_ in db.execute("PRAGMA table_info(instances)")}
    if "row" in columns:
        return
    db.execute("ALTER TABLE instances RENAME TO instances_v2")
    _create_tables(db)
    db.execute(
        f"INSERT INTO instances (row, {_COLUMNS}) SELECT rowid, {_COLUMNS} FROM instances_v2"
    )
    db.execute("DROP TABLE instances_v2")


# Every instance column a release before version 3 had, in the same meaning.
_COLUMNS = "service_type, instance_key, data, last_heartbeat, metrics, check_output, modify_index"

# MIGRATIONS[v] takes a file at version v to v + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _v0_to_v1,
    1: _v1_to_v2,
    2: _v2_to_v3,
}


def version_of(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION (a new file is created at it)."""
    version = version_of(db)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"the store was written by a newer jarvis-dns (schema {version}; "
            f"this release reads up to {SCHEMA_VERSION})"
        )
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if _has_table(db, "events"):  # a file from an earlier release
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
        _create_tables(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None
