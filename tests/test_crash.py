"""kill -9 under a registration flood loses nothing that was acknowledged.

Each round floods a real `jarvis-dns serve` (SQLite store, group commit) with
registrations of new (service, id) pairs from CONNECTIONS concurrent connections, kills
it with SIGKILL after a random short time, checks the database file, and restarts the
server on the same data dir. That restarted server is the next round's target, so the
last round's server holds every round's acknowledgements: a 201 is sent only once its
batch is fsynced, so each one must still be there, and the change index never goes
back below an acknowledged one.
"""

from __future__ import annotations

import asyncio
import itertools
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
CONNECTIONS = 64
SERVICES = 8
SEED = 20240917
KILL_AFTER = (0.2, 1.0)  # seconds of flood before the SIGKILL
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


async def _flood(server: Server, ids: Iterator[int], kill_after: float) -> Flood:
    """Register new instances from CONNECTIONS connections; SIGKILL the server after
    `kill_after` s; every 201 received (before or after the kill) is an ack."""
    flood = Flood([], [])
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=10) as client:

        async def worker() -> None:
            while True:
                n = next(ids)
                try:
                    response = await client.post("/v1/instances", json=_body(n))
                except httpx.TransportError:
                    return  # the server is gone (or this connection is): stop here
                if response.status_code != 201:
                    flood.refusals.append((response.status_code, response.text))
                    continue
                index = int(response.headers["X-Jarvis-Index"])
                flood.acks.append(Ack(_service(n), n, _port(n), index))

        workers = [asyncio.ensure_future(worker()) for _ in range(CONNECTIONS)]
        await asyncio.sleep(kill_after)
        os.kill(server.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*workers), FLOOD_CAP)
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
    data_dir = tmp_path / "data"
    ids = itertools.count()
    acked: list[Ack] = []
    server = _start(data_dir, servers)
    for round_ in range(ROUNDS):
        kill_after = rng.uniform(*KILL_AFTER)
        where = f"round {round_} (seed {SEED}, killed after {kill_after:.2f} s)"
        flood = asyncio.run(_flood(server, ids, kill_after))
        assert not flood.refusals, f"{where}: answers other than 201: {flood.refusals[:5]}"
        assert flood.acks, f"{where}: not one registration was acknowledged"
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
