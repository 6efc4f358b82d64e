"""The HTTP listening socket, guarded: connection caps and a request-read deadline.

aiohttp's own keep-alive timer closes a connection idle between requests (and one that
never sends a byte) after --http-idle-timeout. What it lacks is (1) a bound on the
connections one client, or all of them, may hold open, and (2) a deadline for a
request that trickles in: a client sending a header byte a second (slowloris) holds a
connection forever. Each connection's protocol is wrapped: the wrapper admits or
refuses it at connect time and closes it if a request's headers are not in within
--http-read-timeout of its first byte (the body has its own deadline, common.read_body).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from jarvis_dns.gate import Gate


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's RequestHandler inside, the gate and deadline outside."""

    def __init__(self, make: Callable[[], Any], gate: Gate, read_timeout: float) -> None:
        self._make = make
        self._gate = gate
        self._read_timeout = read_timeout
        self._inner: Any = None
        self._client = ""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        if not self._gate.admit(client):
            transport.abort()
            return
        self._client, self._transport = client, transport
        self._inner = self._make()
        self._inner.connection_made(transport)
        self._arm()  # the first request is due now

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        inner.data_received(data)
        # aiohttp queues a request once its headers are parsed; until then the bytes
        # that came are a request in the making, and the deadline runs.
        if inner._messages or inner._request_in_progress:
            self._disarm()
        elif self._timer is None:
            self._arm()

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._inner is not None:
            self._gate.release(self._client)
            self._inner.connection_lost(exc)
            self._inner = None

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        inner = self._inner
        if inner is None or inner._messages or inner._request_in_progress:
            return
        if self._transport is not None:
            self._transport.abort()


class GuardedSite(web.BaseSite):
    """web.TCPSite with the wrapper around each connection."""

    __slots__ = ("_gate", "_host", "_port", "_read_timeout")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        gate: Gate,
        read_timeout: float,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host, self._port = host, port
        self._gate, self._read_timeout = gate, read_timeout

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        make = self._runner.server
        assert make is not None
        loop = asyncio.get_running_loop()
        gate, timeout = self._gate, self._read_timeout
        self._server = await loop.create_server(
            lambda: _Guarded(make, gate, timeout),
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=True,
        )
