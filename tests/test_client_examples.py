"""The client's example programs, run against a real jarvis-dns.

tests/examples/readme_*.py are the original JARVIS README's examples with a local
URL; aiohttp_service.py and fastapi_service.py are the documented integrations.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import default_sigint, free_port
from conftest import eventually as poll_until

from jarvis_dns.app import App
from jarvis_dns.client import DNSClient, ServiceConfig
from jarvis_dns.config import Config

EXAMPLES = Path(__file__).parent / "examples"
REPO = Path(__file__).parent.parent
# A program that has not printed what it should within this long is hung.
PROGRAM_TIMEOUT_S = 30.0


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    app = App(Config(http="127.0.0.1:0", dns=["127.0.0.1:0"], store="memory://"))
    await app.start()
    monkeypatch.setenv("DNS_SERVER_URL", app.http_url)
    yield app
    await app.stop()
    await app.close()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await poll_until(check, timeout)


class Program:
    """An example run as its own process, stopped by its PID at the end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = ""

    @classmethod
    async def start(cls, path: Path, env: dict[str, str] | None = None) -> Program:
        environ = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environ,
            cwd=str(path.parent),
            preexec_fn=default_sigint,  # stop() may send SIGINT
        )
        return cls(proc)

    async def read_until(self, text: str) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(PROGRAM_TIMEOUT_S):
            while text not in self.output:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                self.output += line.decode()
        return self.output

    async def finish(self) -> int:
        """Wait for the exit (bounded), reading the rest of the output."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(PROGRAM_TIMEOUT_S):
            self.output += (await self.proc.stdout.read()).decode()
            return await self.proc.wait()

    async def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)
        try:
            return await self.finish()
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)


def local_copy(name: str, tmp_path: Path, replacements: dict[str, str]) -> Path:
    text = (EXAMPLES / name).read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def register_auth(server: App) -> DNSClient:
    client = DNSClient(server.http_url)
    meta = {"version": "1.0", "capabilities": ["oauth", "jwt"], "max_connections": 1000}
    assert await client.register_service(ServiceConfig("authentication-service", 1, 5001, meta))
    return client


# -- the original README's examples ---------------------------------------------------


async def test_readme_registration_example_prints_success(server: App, tmp_path: Path) -> None:
    path = local_copy(
        "readme_1_registration.py", tmp_path, {"http://127.0.0.1:9000": server.http_url}
    )
    program = await Program.start(path)
    try:
        output = await program.read_until("Service registration")
        assert "Service registration successful" in output
        inst = server.view.get("authentication-service", 1)
        assert inst.port == 5001 and inst.metadata["capabilities"] == ["oauth", "jwt"]
        await program.stop(signal.SIGINT)
        # Ctrl-C cancels asyncio.run's task: the client deregisters on the way out.
        assert server.view.find("authentication-service", 1) is None
    finally:
        program.kill()


async def test_readme_discovery_example_finds_the_instance(server: App) -> None:
    client = await register_auth(server)
    program = await Program.start(EXAMPLES / "readme_2_discovery.py")
    try:
        assert await program.finish() == 0
        assert "Found service instance: {'service_type': 'authentication-service'" in program.output
        assert "'port': 5001" in program.output and "'busy': False" in program.output
    finally:
        program.kill()
        await client.close()


async def test_readme_status_example_reports_busy(server: App) -> None:
    seen: list[bool] = []
    server.changes.subscribe(lambda events: seen.extend(e.kind.value == "busy" for e in events))
    program = await Program.start(EXAMPLES / "readme_3_status.py")
    try:
        assert await program.finish() == 0, program.output
        assert "Cleanup completed" in program.output
        assert any(seen)  # the registry saw the instance turn busy
        assert server.view.find("authentication-service", 1) is None
    finally:
        program.kill()


async def test_readme_health_endpoint_answers_busy() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("psutil")
    module = load("readme_4_health.py")
    transport = httpx.ASGITransport(app=module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        body = (await http.get("/health")).json()
    assert body["status"] == "healthy" and isinstance(body["busy"], bool)
    assert set(body["metrics"]) == {"cpu_usage", "memory_usage", "timestamp"}


async def test_readme_complete_service_registers_and_deregisters(
    server: App, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    port = free_port()
    path = local_copy("readme_5_service.py", tmp_path, {"5001": str(port)})
    program = await Program.start(path)
    try:
        await eventually(lambda: server.view.find("user-service", 1))
        assert server.view.get("user-service", 1).port == port
        async with httpx.AsyncClient() as http:
            user = await eventually(lambda: _get_json(http, f"http://127.0.0.1:{port}/users/7"))
        assert user == {"user_id": 7, "name": "John Doe"}
        # uvicorn shuts down gracefully, then re-raises SIGTERM to report how it ended.
        assert await program.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in program.output
        assert server.view.find("user-service", 1) is None
    finally:
        program.kill()


async def _status_is(request: Awaitable[httpx.Response], status: int) -> bool:
    return (await request).status_code == status


async def _get_json(http: httpx.AsyncClient, url: str) -> Any:
    try:
        return (await http.get(url)).json()
    except httpx.TransportError:
        return None


# -- the documented integrations -------------------------------------------------------


async def test_aiohttp_integration(server: App) -> None:
    auth = await register_auth(server)
    module = load("aiohttp_service.py")
    port = free_port()
    runner = web.AppRunner(module.make_app(port), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        assert server.view.get("orders", 1).port == port
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/auth-target")
        assert answer.json() == {"auth": "127.0.0.1:5001"}
    finally:
        await runner.cleanup()
        await auth.close()
    assert server.view.find("orders", 1) is None


async def test_fastapi_lifespan_integration(server: App) -> None:
    pytest.importorskip("fastapi")
    auth = await register_auth(server)
    module = load("fastapi_service.py")
    app = module.app
    try:
        async with app.router.lifespan_context(app):
            assert server.view.get("user-service", 1).port == module.PORT
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
                answer = await http.get("/auth-target")
            assert answer.json() == {"auth": "127.0.0.1:5001"}
            await auth.update_status(busy=True)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
                # The service's cache follows the registry within a long-poll round trip.
                await eventually(lambda: _status_is(http.get("/auth-target"), 503), timeout=2.0)
    finally:
        await auth.close()
    assert server.view.find("user-service", 1) is None
