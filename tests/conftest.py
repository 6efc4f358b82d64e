"""Shared fixtures: an injectable clock and a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pki import Pki, make_pki

from jarvis_dns.changes import Changes
from jarvis_dns.config import Config
from jarvis_dns.discovery import Discovery
from jarvis_dns.http.blocking import IndexWaiter
from jarvis_dns.http.common import Context, Hooks
from jarvis_dns.http.routes import make_web_app
from jarvis_dns.registry import View
from jarvis_dns.store.base import Store
from jarvis_dns.store.memory import MemoryStore


class FakeClock:
    """A clock tests move by hand, so nothing sleeps through a TTL."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def default_sigint() -> None:
    """A child's preexec_fn for tests that stop it with SIGINT (Ctrl-C).

    A run started as a background job of a non-interactive shell (`./scripts/test &`, some
    CI runners) inherits SIGINT ignored, exec keeps it ignored, and Python then installs no
    KeyboardInterrupt handler: the child would never see the Ctrl-C the test sends.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and its server and client certificates (tests/pki.py)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def new_changes(clock: Callable[[], float], store: Store | None = None) -> Changes:
    """The one writer over a store (memory:// unless given), as app.py builds it."""
    return Changes(store or MemoryStore(), clock)


@dataclass
class ApiServer:
    url: str
    changes: Changes
    client: httpx.AsyncClient

    @property
    def view(self) -> View:
        return self.changes.view


async def start_api(changes: Changes, config: Config | None = None) -> tuple[web.AppRunner, str]:
    ctx = Context(
        changes,
        Discovery(changes.view),
        config or Config(store="memory://"),
        IndexWaiter(changes),
        Hooks(),
    )
    runner = web.AppRunner(make_web_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
def store() -> Store:
    return MemoryStore()


@pytest.fixture
async def api(clock: FakeClock, store: Store) -> AsyncIterator[ApiServer]:
    changes = new_changes(clock, store)
    await changes.load()
    runner, url = await start_api(changes)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield ApiServer(url, changes, client)
    await runner.cleanup()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until check() is truthy (awaiting it when it is a coroutine), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result or time.monotonic() > deadline:
            assert result, "condition not met in time"
            return result
        await asyncio.sleep(0.01)


def free_ports(count: int) -> list[int]:
    """Distinct ports free over TCP and UDP on 127.0.0.1 (DNS takes both): held together
    while picked, so no two come out the same."""
    held: list[socket.socket] = []
    try:
        while len(held) < 2 * count:
            tcp = socket.socket()
            tcp.bind(("127.0.0.1", 0))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(tcp.getsockname())
            except OSError:  # taken over UDP: pick another
                tcp.close()
                udp.close()
                continue
            held += [tcp, udp]
        return [int(s.getsockname()[1]) for s in held[::2]]
    finally:
        for s in held:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Any]:
    """A real `jarvis-dns serve` process on free ports, ready, killed afterwards."""
    from test_serve import Server

    server = Server(tmp_path)
    server.wait_ready()
    yield server
    server.kill()


def serve_refused(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> list[str]:
    """`jarvis-dns serve` with settings that must stop it at start (on free loopback
    ports, memory://; `flags` come last, so they win; `env` adds JARVIS_DNS_* variables):
    what it printed to stderr, after checking it exited with status 2."""
    http, dns = free_ports(2)
    args = ["--http", f"127.0.0.1:{http}", "--dns", f"127.0.0.1:{dns}"]
    args += ["--data-dir", str(tmp_path), "--store", "memory://", *flags]
    done = subprocess.run(
        [sys.executable, "-m", "jarvis_dns", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 2, done.stderr
    return done.stderr.strip().splitlines()


def app_config(tmp_path: Path, **settings: object) -> Config:
    """A whole server's settings on loopback port 0, its files under tmp_path; memory://
    unless a setting says otherwise."""
    config = Config(
        http="127.0.0.1:0",
        dns=["127.0.0.1:0"],
        data_dir=str(tmp_path),
        zones_dir=str(tmp_path / "zones"),
        store="memory://",
    )
    for name, value in settings.items():
        setattr(config, name, value)
    return config


@contextlib.asynccontextmanager
async def running_app(config: Config) -> AsyncIterator[Any]:
    """The real App (HTTP, DNS, monitor), started and stopped around the block."""
    from jarvis_dns.app import App

    app = App(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
        await app.close()
