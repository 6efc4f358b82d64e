"""A full disk stays survived: `jarvis-dns serve` with its data dir on a small tmpfs.

The tmpfs is mounted in a private mount namespace (unshare), so nothing is mounted on
the host: a holder process keeps that namespace alive, each server enters it (nsenter,
which execs in place: the server's PID is the one Popen knows), and the test reaches
the tmpfs through /proc/<holder>/root. Registrations fill the disk until one is
refused; that refusal must be a clean 503 that leaves the registry untouched, reads,
heartbeats and DNS keep answering, and freeing space is enough for writes to land
again (no restart). A clean restart on the same tmpfs then finds every acknowledged
write and an intact database.
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
from conftest import free_ports
from test_serve import Server

DISK = 2 * 1024 * 1024  # the tmpfs
ROOM = 256 * 1024  # left free beside the filler when the server starts
BIG = 12 * 1024  # metadata per filling registration (the limit is 16 KiB): a few fill ROOM
# Once full, writes bigger than the one refused: a smaller one may still land in the
# WAL space the refused write had taken before it hit ENOSPC (SQLite writes over it).
BIGGER = 15 * 1024
ZONE = "jarvis.internal."
SERVICE = "disk"
LIVENESS_FLUSH = 0.2  # s between liveness writes: one falls while the disk is full
MAX_FILLING = 200  # registrations before giving up on filling 256 KiB

# Mounts, says so, and holds the namespace until its stdin closes.
HOLD = 'mount -t tmpfs -o size="$2",mode=0700 tmpfs "$1" && echo ready && read _'


def _namespace_missing() -> str | None:
    """Why a tmpfs in a private mount namespace cannot be had here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (mounts a tmpfs inside a private mount namespace)"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: util-linux, mount)"
    mountpoint = tempfile.mkdtemp(prefix="jarvis-probe-")
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o size=64k tmpfs "$1" && touch "$1/x"', "sh", mountpoint],
            capture_output=True, timeout=10,
        )  # fmt: skip
    finally:
        os.rmdir(mountpoint)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private namespace: {probe.stderr.decode().strip()}"
    return None


_NAMESPACE_MISSING = _namespace_missing()
pytestmark = pytest.mark.skipif(_NAMESPACE_MISSING is not None, reason=str(_NAMESPACE_MISSING))


class Disk:
    """A tmpfs of DISK bytes at `mountpoint`, seen only inside the holder's namespace."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private",
             "sh", "-c", HOLD, "sh", str(mountpoint), str(DISK)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.holder.stdout is not None and self.holder.stderr is not None
        if self.holder.stdout.readline().strip() != "ready":  # sh failed and exited
            self.holder.wait(timeout=10)
            why = self.holder.stderr.read().strip()
            self.close()
            raise AssertionError(f"the tmpfs did not mount: {why}")

    def path(self, name: str = "") -> Path:
        """A file on the tmpfs, as the test process reaches it."""
        return Path(f"/proc/{self.holder.pid}/root{self.mountpoint}") / name

    def free(self) -> int:
        st = os.statvfs(self.path())
        return st.f_bavail * st.f_frsize

    def fill(self, name: str, leave: int = 0) -> None:
        """Write `name` until only `leave` bytes are free (or none: ENOSPC ends it)."""
        chunk = b"\0" * 65536
        with open(self.path(name), "ab", buffering=0) as f:
            while (room := self.free() - leave) > 0:
                try:
                    f.write(chunk[: min(len(chunk), room)])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    return

    def close(self) -> None:
        if self.holder.poll() is None:
            assert self.holder.stdin is not None
            self.holder.stdin.close()  # its `read` ends: the namespace and tmpfs go
            try:
                self.holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait(timeout=10)
        for stream in (self.holder.stdout, self.holder.stderr):
            if stream is not None:
                stream.close()


class DiskServer(Server):
    """`jarvis-dns serve` inside the disk's namespace, its data dir on the tmpfs."""

    def __init__(self, disk: Disk, zones: Path) -> None:
        self.http, self.dns = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http}"
        argv = ["nsenter", f"--target={disk.holder.pid}", "--mount"]  # execs: same PID
        argv += [sys.executable, "-m", "jarvis_dns", "serve"]
        argv += ["--http", f"127.0.0.1:{self.http}", "--dns", f"127.0.0.1:{self.dns}"]
        argv += ["--data-dir", str(disk.mountpoint), "--zones-dir", str(zones)]
        argv += ["--no-active-checks", "--log-level", "warning"]
        argv += ["--liveness-flush", str(LIVENESS_FLUSH)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.log = ""

    def wait_log(self, text: str, timeout: float = 5.0) -> None:
        """Until the server's log (stdout and stderr) holds `text`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()  # read raw: output() still gets the rest
        deadline = time.monotonic() + timeout
        while text not in self.log:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} in the log in {timeout:g} s:\n{self.log}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"the server's log ended:\n{self.log}")
                self.log += chunk.decode(errors="replace")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    d = Disk(mountpoint)
    yield d
    d.close()


@pytest.fixture
def servers() -> Iterator[list[DiskServer]]:
    started: list[DiskServer] = []
    yield started
    for server in started:
        server.kill()  # by its PID, if still running


def _body(iid: int, **metadata: object) -> dict[str, object]:
    return {
        "service_type": SERVICE,
        "instance_id": iid,
        "host": "127.0.0.1",
        "port": 7000 + iid,
        "ttl_s": 600,  # nothing expires (and writes) while the test runs
        "metadata": metadata,
    }


def _srv_ports(server: DiskServer) -> set[int]:
    query = dns.message.make_query(f"_{SERVICE}._tcp.{ZONE}", "SRV")
    reply = dns.query.udp(query, "127.0.0.1", port=server.dns, timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return {rr.port for rrset in reply.answer for rr in rrset}


def _integrity(disk: Disk, into: Path) -> list[tuple[str]]:
    """PRAGMA integrity_check of the stopped server's database, copied off the tmpfs
    (SQLite resolves /proc/<pid>/root to this namespace's /, so it cannot open it there)."""
    into.mkdir()
    for name in ("registry.db", "registry.db-wal"):
        if disk.path(name).exists():
            shutil.copyfile(disk.path(name), into / name)
    conn = sqlite3.connect(into / "registry.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


@pytest.mark.timeout(30)
def test_a_full_disk_refuses_writes_cleanly_and_recovers_without_restart(
    disk: Disk, tmp_path: Path, servers: list[DiskServer]
) -> None:
    server = DiskServer(disk, tmp_path / "zones")
    servers.append(server)
    server.wait_ready()
    disk.fill("filler", leave=ROOM)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        # Register until the disk is full: every answer is 201 until the one that is 503.
        acked: dict[int, dict[str, object]] = {}
        refused = None
        for iid in range(MAX_FILLING):
            body = _body(iid, blob=f"{iid:06d}" * (BIG // 6))
            response = client.post("/v1/instances", json=body)
            if response.status_code == 503:
                refused = (iid, response)
                break
            assert response.status_code == 201, response.text
            acked[iid] = body
        assert refused is not None, f"{MAX_FILLING} registrations never filled {ROOM} bytes"
        assert acked, "the very first registration already failed: ROOM is too small"
        lost_id, response = refused
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == "store_unavailable"
        assert "full" in error["message"].lower(), error
        assert client.get(f"/v1/services/{SERVICE}/instances/{lost_id}").status_code == 404

        # Not one byte left: a write bigger than the refused one is refused for sure.
        disk.fill("brim")
        assert disk.free() == 0
        kept = next(iter(acked))
        update = _body(kept, blob="changed" * (BIGGER // 7))
        response = client.post("/v1/instances", json=update)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "store_unavailable"
        response = client.post("/v1/instances", json=_body(lost_id, blob="x" * BIGGER))
        assert response.status_code == 503, response.text

        # The view is untouched by the refused writes; reads, heartbeats and DNS answer.
        got = client.get(f"/v1/services/{SERVICE}/instances/{kept}")
        assert got.status_code == 200
        assert got.json()["metadata"] == acked[kept]["metadata"]
        assert client.get(f"/v1/services/{SERVICE}/instances/{lost_id}").status_code == 404
        listed = client.get(f"/v1/services/{SERVICE}").json()["instances"]
        assert sorted(i["instance_id"] for i in listed) == sorted(acked)
        beats: dict[int, float] = {}
        for iid in acked:
            beat = client.put(f"/v1/services/{SERVICE}/instances/{iid}/heartbeat", json={})
            assert beat.status_code == 200, beat.text
            assert beat.json()["status"] == "active"
            got = client.get(f"/v1/services/{SERVICE}/instances/{iid}").json()
            beats[iid] = got["last_heartbeat"]
        server.wait_log("liveness flush failed")  # the beats could not be written: kept
        health = client.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["instances"] == len(acked)
        ports = _srv_ports(server)
        assert ports and ports <= {7000 + iid for iid in acked}, ports
        assert server.proc.poll() is None

        # Free the space: the next writes land, on the same server process.
        disk.path("brim").unlink()
        disk.path("filler").unlink()
        response = client.post("/v1/instances", json=_body(lost_id, small=True))
        assert response.status_code == 201, response.text
        acked[lost_id] = _body(lost_id, small=True)
        response = client.post("/v1/instances", json=update)
        assert response.status_code == 200, response.text
        acked[kept] = update
        index = int(response.headers["X-Jarvis-Index"])
        assert 7000 + lost_id in _srv_ports(server)
    assert server.terminate() == 0

    # A clean restart on the same tmpfs: every acknowledged write, an intact database.
    assert _integrity(disk, tmp_path / "copy1") == [("ok",)]
    again = DiskServer(disk, tmp_path / "zones")
    servers.append(again)
    again.wait_ready()
    with httpx.Client(base_url=again.url, timeout=10) as client:
        assert int(client.get("/v1/health").json()["index"]) >= index
        for iid, body in acked.items():
            got = client.get(f"/v1/services/{SERVICE}/instances/{iid}")
            assert got.status_code == 200, (iid, got.text)
            assert got.json()["metadata"] == body["metadata"]
            if iid in beats and iid != kept:  # beaten on the full disk, written later
                assert got.json()["last_heartbeat"] == beats[iid], iid
        listed = client.get(f"/v1/services/{SERVICE}").json()["instances"]
        assert sorted(i["instance_id"] for i in listed) == sorted(acked)
    assert again.terminate() == 0
    assert _integrity(disk, tmp_path / "copy2") == [("ok",)]
