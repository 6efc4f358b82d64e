"""Crash benchmark: kill -9 under a registration flood, restart, count what was lost.

    .venv/bin/python scripts/bench/crash.py [--rounds 20] [--connections 64] [--quick]

Each round floods `jarvis-dns serve` (SQLite store, pinned to core 0) with registrations
of new (service, id) pairs from --connections keep-alive connections (raw asyncio
HTTP/1.1, this process pinned to core 1), sends it SIGKILL a random 0.2-1.0 s (seeded)
after the first 201, runs PRAGMA integrity_check on a copy of the files it left, and
restarts it on the same data dir, which then must hold every registration it answered
201 (checked over HTTP, for every round so far) with a change index at least the last
acknowledged one. The data dir lives through all rounds, so the later restarts recover
a grown database. Reports registrations/s during the flood, acknowledgements per round,
lost (must be 0), integrity and restart-to-ready time. Writes its section of
BENCHMARKS.md; exits 1 when anything acknowledged was lost or a check failed.
"""

from __future__ import annotations

import sys

# Keep this folder behind the standard library: httpx imports `http`, and a sibling
# script is named http.py.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import LOAD_CPU, SERVER_CPU, free_port, header, jarvis, stop, wait_http, write_section

SERVICES = 8
SEED = 20240917
KILL_AFTER = (0.2, 1.0)  # seconds from the first acknowledgement to the SIGKILL


@dataclass(frozen=True, slots=True)
class Ack:
    service: str
    instance_id: int
    port: int
    index: int


@dataclass
class Round:
    kill_after: float
    acks: list[Ack] = field(default_factory=list)
    refusals: int = 0  # answers other than 201
    flood_s: float = 0.0  # from the first request to the SIGKILL
    integrity: str = ""
    restart_s: float = 0.0
    lost: int = 0
    index_ok: bool = True

    @property
    def rate(self) -> float:
        return len(self.acks) / self.flood_s if self.flood_s else 0.0


def _service(n: int) -> str:
    return f"crash-{n % SERVICES}"


def _port(n: int) -> int:
    return 1024 + n % 60000


def _body(n: int) -> bytes:
    body = {
        "service_type": _service(n),
        "instance_id": n,
        "host": "127.0.0.1",
        "port": _port(n),
        "ttl_s": 86_400,  # nothing expires (and writes) during the run
        "metadata": {"n": n, "tags": ["crash"]},
    }
    return json.dumps(body).encode()


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, dict[str, str]]:
    head = "POST /v1/instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (ln.partition(": ") for ln in lines[1:] if ln)}
    await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers


async def flood(port: int, pid: int, ids: Iterator[int], connections: int, result: Round) -> None:
    """Register from `connections` connections until SIGKILL, kill_after s after the
    first 201; every 201 that arrives (the server sent it before it died) is an ack."""
    first = asyncio.Event()
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                n = next(ids)
                status, headers = await _post(reader, writer, _body(n))
                if status != 201:
                    result.refusals += 1
                    continue
                result.acks.append(Ack(_service(n), n, _port(n), int(headers["x-jarvis-index"])))
                first.set()
        except (OSError, asyncio.IncompleteReadError):
            return  # the server is gone
        finally:
            writer.close()

    started = time.monotonic()
    workers = asyncio.gather(*(worker(r, w) for r, w in opened))
    try:
        await asyncio.wait_for(first.wait(), 10)
        await asyncio.sleep(result.kill_after)
    finally:
        os.kill(pid, signal.SIGKILL)
        result.flood_s = time.monotonic() - started
        await asyncio.wait_for(workers, 10)


def integrity(data_dir: Path, into: Path) -> str:
    """integrity_check on a copy of the files, so the restart recovers what was left."""
    into.mkdir()
    for name in ("registry.db", "registry.db-wal"):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, into / name)
    conn = sqlite3.connect(into / "registry.db")
    try:
        return ", ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def missing(url: str, acks: list[Ack]) -> int:
    held: dict[tuple[str, int], int] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for svc in sorted({a.service for a in acks}):
            response = client.get(f"/v1/services/{svc}")
            response.raise_for_status()
            for inst in response.json()["instances"]:
                held[svc, inst["instance_id"]] = inst["port"]
    return sum(1 for a in acks if held.get((a.service, a.instance_id)) != a.port)


def serve(data: Path) -> tuple[subprocess.Popen[bytes], int]:
    http, dns = free_port(), free_port()
    argv = ["--data-dir", str(data), "--zones-dir", str(data / "zones"), "--no-active-checks"]
    server = jarvis(http, dns, *argv)  # taskset execs: server.pid is the server's
    wait_http(f"http://127.0.0.1:{http}/v1/health", timeout=60)
    return server, http


def run(rounds: int, connections: int) -> tuple[list[Round], int, str]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    rng = random.Random(SEED)
    ids = itertools.count()
    results: list[Round] = []
    acked: list[Ack] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        server, port = serve(data)
        try:
            for k in range(rounds):
                result = Round(rng.uniform(*KILL_AFTER))
                results.append(result)
                asyncio.run(flood(port, server.pid, ids, connections, result))
                server.wait(timeout=10)
                if acked and result.acks:  # never below an acknowledged index
                    result.index_ok = min(a.index for a in result.acks) > max(
                        a.index for a in acked
                    )
                acked += result.acks
                result.integrity = integrity(data, Path(tmp) / f"copy-{k}")
                began = time.monotonic()
                server, port = serve(data)
                result.restart_s = time.monotonic() - began
                url = f"http://127.0.0.1:{port}"
                health = httpx.get(url + "/v1/health", timeout=10).json()
                if acked and int(health["index"]) < max(a.index for a in acked):
                    result.index_ok = False
                result.lost = missing(url, acked)
                print(
                    f"round {k}: {len(result.acks)} acks at {result.rate:,.0f}/s, "
                    f"lost {result.lost}, integrity {result.integrity}, "
                    f"restart {result.restart_s:.2f} s",
                    file=sys.stderr,
                )
        finally:
            stop(server)
        final = integrity(data, Path(tmp) / "copy-final")
    return results, len(acked), final


def report(results: list[Round], total: int, final: str, command: str, connections: int) -> str:
    per_round = [len(r.acks) for r in results]
    rates = [r.rate for r in results]
    restarts = [r.restart_s for r in results]
    lost = max((r.lost for r in results), default=0)
    checks = {r.integrity for r in results} | {final}
    lines = [
        header("Crash: kill -9 under a registration flood", command),
        f"{len(results)} rounds on one data dir (seed {SEED}). Each round floods the server "
        f"(SQLite store, uvloop, pinned to core {SERVER_CPU}) with registrations of new "
        f"(service, id) pairs over {connections} keep-alive connections (raw asyncio "
        f"HTTP/1.1, core {LOAD_CPU}), sends SIGKILL {KILL_AFTER[0]:g}-{KILL_AFTER[1]:g} s "
        "after the first 201, checks a copy of the files with `PRAGMA integrity_check`, "
        "restarts on the same data dir and looks up every registration ever answered 201. "
        "A kill -9 is not a power cut: it tests that a 201 comes only after the batch is "
        "written, not the fsync itself.",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| rounds | {len(results)} |",
        f"| acknowledged registrations per round (min / median / max) | {min(per_round):,} / "
        f"{statistics.median(per_round):,.0f} / {max(per_round):,} |",
        f"| acknowledged registrations in all | {total:,} |",
        f"| lost (acknowledged, missing after the restart) | {lost} |",
        f"| answers other than 201 during the floods | {sum(r.refusals for r in results)} |",
        f"| change index below an acknowledged one after a restart | "
        f"{sum(1 for r in results if not r.index_ok)} |",
        f"| integrity_check (after every kill, and after the last clean stop) | "
        f"{', '.join(sorted(checks))} |",
        f"| registrations/s during the flood (min / median / max) | {min(rates):,.0f} / "
        f"{statistics.median(rates):,.0f} / {max(rates):,.0f} |",
        f"| restart to ready (median / max; the last on {total:,} instances) | "
        f"{statistics.median(restarts):.2f} s / {max(restarts):.2f} s |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 rounds, writes nothing")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    results, total, final = run(rounds, args.connections)
    command = "scripts/bench/crash.py" + (" --quick" if args.quick else "")
    text = report(results, total, final, command, args.connections)
    print(text)
    if not args.quick:
        write_section("crash", text)
    failed = any(r.lost or r.refusals or not r.index_ok or r.integrity != "ok" for r in results)
    if failed or final != "ok":
        sys.exit("crash: something acknowledged was lost or a check failed (see above)")


if __name__ == "__main__":
    main()
