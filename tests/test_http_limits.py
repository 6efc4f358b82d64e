"""HTTP limits on a real server on loopback: connection caps (per client and in all),
the request-read deadline (slowloris, headers and body), the keep-alive idle timeout,
the cap on waiting blocking queries, and ?index=0 answering at once."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import app_config, running_app
from test_serve import Server

from jarvis_dns.app import App
from jarvis_dns.config import Config
from jarvis_dns.http.blocking import DEFAULT_WAIT_S, parse_wait


def config(tmp_path: Path, **kw: object) -> Config:
    return app_config(tmp_path, **kw)


async def connect(app: App) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", app.http_port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (fails past `seconds`)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while await reader.read(4096):
            pass
    return time.monotonic() - started


async def test_the_read_deadline_defaults_to_10s() -> None:
    assert Config().http_read_timeout_s == 10.0
    assert DEFAULT_WAIT_S == 60.0 and parse_wait(None) == 60.0


async def test_slowloris_headers_are_cut_at_the_read_deadline(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, http_read_timeout_s=1.0)) as app:
        reader, writer = await connect(app)
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            for _ in range(50):
                writer.write(b"X")  # a header byte every 0.1 s, never the blank line
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(trickle())
        took = await closed_within(reader, 4.0)
        dripping.cancel()
        assert 0.8 < took < 3.0
        writer.close()


async def test_a_slow_body_is_cut_too(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, http_read_timeout_s=1.0)) as app:
        reader, writer = await connect(app)
        writer.write(
            b"POST /v1/instances HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        async with asyncio.timeout(4.0):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3.0
        writer.close()


async def test_a_silent_connection_is_closed(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, http_read_timeout_s=1.0)) as app:
        reader, writer = await connect(app)
        assert await closed_within(reader, 4.0) < 3.0
        writer.close()


async def test_keep_alive_idle_timeout(tmp_path: Path) -> None:
    async with running_app(config(tmp_path, http_idle_timeout_s=0.5)) as app:
        reader, writer = await connect(app)
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert await closed_within(reader, 4.0) < 3.0
        writer.close()


async def _refused(app: App) -> bool:
    """A new connection is dropped at once (no answer to a request)."""
    reader, writer = await connect(app)
    try:
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(2.0):
            return await reader.read(1) == b""
    except ConnectionError:
        return True
    finally:
        writer.close()


@pytest.mark.parametrize(("total", "per_client"), [(100, 4), (4, 100)])
async def test_connection_caps(tmp_path: Path, total: int, per_client: int) -> None:
    cfg = config(tmp_path, http_max_connections=total, http_max_connections_per_client=per_client)
    async with running_app(cfg) as app:
        held = [await connect(app) for _ in range(4)]
        await asyncio.sleep(0.05)
        assert app.http_gate.open == 4
        assert await _refused(app)
        held[0][1].close()
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=app.http_url) as c:
            assert (await c.get("/v1/health")).status_code == 200  # a slot freed
        for _, writer in held[1:]:
            writer.close()


async def test_waiting_blocking_queries_are_capped(tmp_path: Path) -> None:
    async with (
        running_app(config(tmp_path, max_waiting_queries=2)) as app,
        httpx.AsyncClient(base_url=app.http_url, timeout=10) as c,
    ):
        await c.post("/v1/instances", json={"service_type": "a", "instance_id": 1, "port": 80})
        waiting = [
            asyncio.create_task(c.get("/v1/services/a", params={"index": 1, "wait": "5s"}))
            for _ in range(2)
        ]
        while app.waiter.waiting < 2:
            await asyncio.sleep(0.01)
        r = await c.get("/v1/services/a", params={"index": 1, "wait": "5s"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "too_many_waiting"
        await c.put("/v1/services/a/instances/1/status", json={"busy": True})
        assert [(await t).status_code for t in waiting] == [200, 200]


async def test_index_zero_answers_at_once(tmp_path: Path) -> None:
    async with (
        running_app(config(tmp_path)) as app,
        httpx.AsyncClient(base_url=app.http_url, timeout=5) as c,
    ):
        started = time.monotonic()
        for path in ("/v1/services", "/v1/services/none", "/v1/events"):
            assert (await c.get(path, params={"index": 0})).status_code == 200
        assert time.monotonic() - started < 2.0


def test_a_real_serve_cuts_slowloris_and_caps_a_client(tmp_path: Path) -> None:
    """The same on `jarvis-dns serve` (uvloop, its own transports)."""
    server = Server(tmp_path, "--http-read-timeout", "1", "--http-max-connections-per-client", "3")
    try:
        server.wait_ready()
        slow = socket.create_connection(("127.0.0.1", server.http), timeout=5)
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert dropped(slow) and time.monotonic() - started < 3.0
        slow.close()
        held = [socket.create_connection(("127.0.0.1", server.http)) for _ in range(3)]
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", server.http), timeout=5)
        extra.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert dropped(extra)
        for s in (*held, extra):
            s.close()
        time.sleep(0.1)
        assert httpx.get(server.url + "/v1/health").status_code == 200
    finally:
        server.kill()
        server.output()  # reaps it and closes its pipe


def dropped(sock: socket.socket) -> bool:
    """The server closed (or reset) the connection without an answer."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
