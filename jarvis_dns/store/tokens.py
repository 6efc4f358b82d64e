"""Where ACL tokens are kept: the SQLite file's ``acl_tokens`` table, etcd (shared by
the nodes of a cluster), or memory.

Tokens change rarely (an operator creates one), so the SQLite side opens its own
connection and writes from a worker thread, apart from the registry's group commit;
WAL and SQLite's busy timeout keep the two writers from tripping over each other.
Only the hash of a secret is stored (acl.Token.to_record).

In etcd, tokens live beside the registry's keys, not under them (the registry's watch
covers its root): ``<prefix>/<zone>.acl/tokens/<accessor>``. Every node reads them
again every ``Config.acl_refresh_s`` (5 s; ``shared``), so a token made or revoked on
one node is in force on all of them within that (Consul's secondary datacenters cache
tokens for 30 s).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Protocol

from jarvis_dns.acl import Token
from jarvis_dns.store.etcd_api import EtcdClient, op_delete, op_put, prefix_end
from jarvis_dns.store.schema import migrate


class TokenStore(Protocol):
    shared: bool  # other nodes write it too: read it again every REFRESH_S

    async def load(self) -> list[Token]: ...

    async def put(self, token: Token) -> None: ...

    async def delete(self, accessor: str) -> None: ...

    def close(self) -> None: ...


class MemoryTokens:
    """Tokens that last as long as the process (memory:// stores)."""

    shared = False

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
    shared = False

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


class EtcdTokens:
    shared = True

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def load(self) -> list[Token]:
        found = await self._client.range(self._prefix, prefix_end(self._prefix))
        return [Token.from_record(json.loads(kv.value)) for kv in found.kvs]

    async def put(self, token: Token) -> None:
        data = json.dumps(token.to_record(), separators=(",", ":"))
        await self._client.txn(success=[op_put(self._prefix + token.accessor, data)])

    async def delete(self, accessor: str) -> None:
        await self._client.txn(success=[op_delete(self._prefix + accessor)])

    def close(self) -> None:
        return None  # the client belongs to the registry's store
