"""kill -9 under a registration flood loses nothing that was acknowledged.

Each round floods a real `jarvis-dns serve` (SQLite store, group commit) with
registrations of new (service, id) pairs from CONNECTIONS concurrent connections, kills
it with SIGKILL a random short time after the first 201, checks the database file, and
restarts the server on the same data dir. That restarted server is the next round's
target, for CHAIN rounds, so the last one holds every acknowledgement of its chain: a
201 is sent only once its batch is fsynced, so each one must still be there, and the
change index never goes back below an acknowledged one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from test_serve import Server

ROUNDS = 20
# Rounds per data dir: recovery meets a grown database, and start-up (which loads every
# instance) stays short enough for the whole test to take about a minute on 2 cores.
CHAIN = 5
CONNECTIONS = 64
SERVICES = 8
SEED = 20240917
KILL_AFTER = (0.2, 1.0)  # seconds from the first acknowledgement to the SIGKILL
FIRST_ACK_WITHIN = 10.0
FLOOD_CAP = 10.0  # seconds for the in-flight requests to fail once the server is dead


@dataclass(frozen=True, slots=True)
class Ack:
    service: str
    instance_id: int
    port: int
    index: int


@dataclass
class Flood:
    acks: list[Ack]
    refusals: list[tuple[int, str]]  # any answer that is not a 201


def _service(n: int) -> str:
    return f"crash-{n % SERVICES}"


def _port(n: int) -> int:
    return 1024 + n % 60000


def _body(n: int) -> dict[str, object]:
    return {
        "service_type": _service(n),
        "instance_id": n,
        "host": "127.0.0.1",
        "port": _port(n),
        "ttl_s": 600,  # nothing expires (and writes) between the rounds
        "metadata": {"n": n, "tags": ["crash"]},
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection, raw: a flood through httpx measures httpx
    (about 25 times fewer requests per second here)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: object) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (ln.partition(": ") for ln in lines[1:] if ln)}
        return status, headers, await self.reader.readexactly(int(headers["content-length"]))

    def close(self) -> None:
        self.writer.close()


async def _flood(server: Server, ids: Iterator[int], kill_after: float) -> Flood:
    """Register new instances from CONNECTIONS connections; SIGKILL the server
    `kill_after` s after the first 201. Every 201 received (before or after the kill:
    the server sent it before it died) is an ack."""
    flood = Flood([], [])
    first = asyncio.Event()

    async def worker() -> None:
        conn = None
        try:
            conn = await _Connection.open(server.http)
            while True:
                n = next(ids)
                status, headers, body = await conn.post("/v1/instances", _body(n))
                if status != 201:
                    flood.refusals.append((status, body.decode(errors="replace")))
                    continue
                flood.acks.append(Ack(_service(n), n, _port(n), int(headers["x-jarvis-index"])))
                first.set()
        except (OSError, asyncio.IncompleteReadError):
            return  # the server is gone: what is in flight stays unanswered
        finally:
            if conn is not None:
                conn.close()

    workers = asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    try:
        try:
            await asyncio.wait_for(first.wait(), FIRST_ACK_WITHIN)
        except TimeoutError:
            raise AssertionError(f"no 201 within {FIRST_ACK_WITHIN:g} s of flood") from None
        await asyncio.sleep(kill_after)
    finally:
        os.kill(server.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(workers, FLOOD_CAP)
    server.proc.wait(timeout=10)
    return flood


def _integrity(data_dir: Path, into: Path) -> list[tuple[str]]:
    """PRAGMA integrity_check of the dead server's database, on a copy of its files (the
    WAL included) so that the restarted server recovers the very bytes it left."""
    into.mkdir()
    for name in ("registry.db", "registry.db-wal"):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, into / name)
    conn = sqlite3.connect(into / "registry.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


def _missing(server: Server, acks: list[Ack]) -> list[Ack]:
    """The acknowledged registrations the server does not hold (as registered)."""
    held: dict[tuple[str, int], int] = {}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for svc in sorted({a.service for a in acks}):
            response = client.get(f"/v1/services/{svc}")
            assert response.status_code == 200, response.text
            for inst in response.json()["instances"]:
                held[svc, inst["instance_id"]] = inst["port"]
    return [a for a in acks if held.get((a.service, a.instance_id)) != a.port]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()  # by its PID, if still running


def _start(data_dir: Path, servers: list[Server]) -> Server:
    server = Server(data_dir, "--no-active-checks", "--log-level", "warning")
    servers.append(server)
    server.wait_ready()
    return server


def test_kill_9_under_a_flood_loses_no_acknowledged_registration(
    tmp_path: Path, servers: list[Server]
) -> None:
    rng = random.Random(SEED)
    ids = itertools.count()  # every (service, id) pair is new
    for chain in range(ROUNDS // CHAIN):
        data_dir = tmp_path / f"data-{chain}"
        acked: list[Ack] = []
        server = _start(data_dir, servers)
        for round_ in range(chain * CHAIN, (chain + 1) * CHAIN):
            kill_after = rng.uniform(*KILL_AFTER)
            where = f"round {round_} (seed {SEED}, killed {kill_after:.2f} s after the first ack)"
            flood = asyncio.run(_flood(server, ids, kill_after))
            assert not flood.refusals, f"{where}: answers other than 201: {flood.refusals[:5]}"
            if acked:  # the index never goes back below an acknowledged write
                before = max(a.index for a in acked)
                assert min(a.index for a in flood.acks) > before, where
            acked += flood.acks

            assert _integrity(data_dir, tmp_path / f"copy-{round_}") == [("ok",)], where
            server = _start(data_dir, servers)
            health = httpx.get(server.url + "/v1/health", timeout=10).json()
            assert int(health["index"]) >= max(a.index for a in acked), where
            assert health["instances"] >= len(acked), where
            lost = _missing(server, acked)
            assert not lost, f"{where}: {len(lost)} of {len(acked)} acks lost, e.g. {lost[:5]}"

        assert server.terminate() == 0
        conn = sqlite3.connect(data_dir / "registry.db")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
