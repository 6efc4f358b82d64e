"""Real etcd members for the tests: N processes on free loopback ports, data under a
test's tmp_path, stopped (or killed -9) by their PID.

Short Raft timings (heartbeat 50 ms, election 500 ms) keep elections and the minimum
lease TTL (about 1 s) short enough for tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import free_ports

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
READY_S = 20.0


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    initial_cluster: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        assert self.process is None, f"{self.name} is running"
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://127.0.0.1:{self.client_port}"
        command = [
            ETCD,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.initial_cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=jarvis-dns-tests",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as answer:
                return b'"true"' in answer.read()
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9, by PID."""
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EtcdCluster:
    def __init__(self, root: Path, size: int = 1) -> None:
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(size)]
        initial = ",".join(
            f"{name}=http://127.0.0.1:{ports[2 * i + 1]}" for i, name in enumerate(names)
        )
        root.mkdir(parents=True, exist_ok=True)
        self.members = [
            Member(
                name,
                ports[2 * i],
                ports[2 * i + 1],
                root / f"{name}.etcd",
                root / f"{name}.log",
                initial,
            )
            for i, name in enumerate(names)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def url(self, prefix: str = "/jarvis-dns") -> str:
        return f"etcd://{','.join(self.endpoints)}?prefix={prefix}"

    def member_at(self, endpoint: str) -> Member:
        host_port = endpoint.split("://")[-1]
        return next(m for m in self.members if m.endpoint == host_port)

    def start(self) -> None:
        for member in self.members:
            member.start()
        self.wait_healthy(self.members)

    def wait_healthy(self, members: list[Member]) -> None:
        deadline = time.monotonic() + READY_S
        for member in members:
            while not member.healthy():
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited:\n{member.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {member.name} not healthy:\n{member.log_tail()}")
                time.sleep(0.05)

    def stop(self) -> None:
        for member in self.members:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                member.stop()


@contextlib.contextmanager
def running(root: Path, size: int = 1) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(root, size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
