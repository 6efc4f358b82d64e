"""Where ACL tokens are kept: the SQLite file's ``acl_tokens`` table, or memory.

Tokens change rarely (an operator creates one), so the SQLite side opens its own
connection and writes from a worker thread, apart from the registry's group commit;
WAL and SQLite's busy timeout keep the two writers from tripping over each other.
Only the hash of a secret is stored (acl.Token.to_record).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Protocol

from jarvis_dns.acl import Token
from jarvis_dns.store.schema import migrate


class TokenStore(Protocol):
    async def load(self) -> list[Token]: ...

    async def put(self, token: Token) -> None: ...

    async def delete(self, accessor: str) -> None: ...

    def close(self) -> None: ...


class MemoryTokens:
    """Tokens that last as long as the process (memory:// and etcd:// stores)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}

    async def load(self) -> list[Token]:
        return list(self._tokens.values())

    async def put(self, token: Token) -> None:
        self._tokens[token.accessor] = token

    async def delete(self, accessor: str) -> None:
        self._tokens.pop(accessor, None)

    def close(self) -> None:
        return None


class SqliteTokens:
    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        migrate(self._db)  # a no-op once the registry store has opened the file
        self._lock = asyncio.Lock()

    async def load(self) -> list[Token]:
        rows = await asyncio.to_thread(self._query, "SELECT data FROM acl_tokens", ())
        return [Token.from_record(json.loads(data)) for (data,) in rows]

    async def put(self, token: Token) -> None:
        data = json.dumps(token.to_record(), separators=(",", ":"))
        sql = "INSERT OR REPLACE INTO acl_tokens (accessor, data) VALUES (?, ?)"
        await self._write(sql, (token.accessor, data))

    async def delete(self, accessor: str) -> None:
        await self._write("DELETE FROM acl_tokens WHERE accessor = ?", (accessor,))

    async def _write(self, sql: str, args: tuple[str, ...]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._query, sql, args)

    def _query(self, sql: str, args: tuple[str, ...]) -> list[tuple[str]]:
        return list(self._db.execute(sql, args).fetchall())

    def close(self) -> None:
        self._db.close()
