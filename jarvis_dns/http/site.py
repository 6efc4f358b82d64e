"""The HTTP listening socket, guarded: connection caps and a request-read deadline.

aiohttp's own keep-alive timer closes a connection idle between requests (and one that
never sends a byte) after --http-idle-timeout. What it lacks is (1) a bound on the
connections one client, or all of them, may hold open, and (2) a deadline for a
request that trickles in: a client sending a header byte a second (slowloris) holds a
connection forever. Each connection's protocol is wrapped: the wrapper admits or
refuses it at connect time and closes it if a request's headers are not in within
--http-read-timeout of its first byte (the body has its own deadline, common.read_body).

With the fast lane (lane.py) on, the wrapper also frames each request itself and hands
aiohttp whole requests only: a heartbeat or busy flip the lane answers is answered
here, while aiohttp is idle on the connection, so the answers keep the requests' order;
anything it cannot frame gives aiohttp the connection for good. Bytes it holds short of
a whole request run the same read deadline. The lane takes its requests in turns
(turns.Rota): TURN_S of them, then the loop polls its sockets again, so a flood of
registrations on 64 connections does not hold a DNS answer for all 64.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from jarvis_dns.gate import Gate
from jarvis_dns.http.lane import Lane, Unframed, frame
from jarvis_dns.turns import Rota

# Answers the lane lets wait unread in a connection's send buffer, in bytes.
MAX_UNREAD = 256 * 1024
# How long the lane serves requests in one turn of the loop before the loop polls its
# sockets (DNS) again. What it started runs on in the turn after (a registration's plan
# and its answer, two to three times as long), so this is a fraction of the lag a DNS
# query may meet: on a slow VM a 64-connection registration flood then held DNS p99
# 3.5-3.8 ms, against 4.2-5.8 ms at 1-2 ms a turn.
TURN_S = 0.0005


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's RequestHandler inside, the gate, the deadline and the
    fast lane outside."""

    def __init__(
        self,
        make: Callable[[], Any],
        gate: Gate,
        read_timeout: float,
        rota: Rota,
        lane: Lane | None = None,
        max_body: int = 0,
    ) -> None:
        self._make = make
        self._rota = rota
        self._queued = False
        self._gate = gate
        self._read_timeout = read_timeout
        self._inner: Any = None
        self._client = ""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lane = lane  # None: aiohttp frames every byte of this connection
        self._max_body = max_body
        self._pending = bytearray()  # bytes the lane holds: the start of a request
        self._through = 0  # bytes of a request's body aiohttp reads as they come
        self._answering = False  # the lane awaits a change for this connection

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
        if self._through:
            passed = data[: self._through]
            self._through -= len(passed)
            inner.data_received(passed)
            data = data[len(passed) :]
        if self._lane is None:
            inner.data_received(data)
        elif data:
            self._pending += data
            if not self._queued:
                self._queued = True
                self._rota.add(self._turn)
            return  # the turn runs the deadline
        self._deadline()

    def _turn(self) -> None:
        """The rota's call: the requests that came since."""
        if self._queued:  # not served already, at the end of the stream
            self._queued = False
            self._serve()
            self._deadline()

    def _serve(self) -> None:
        """Take whole requests off the pending bytes: the lane's answered here, the
        rest handed to aiohttp, in order."""
        inner = self._inner
        while (lane := self._lane) is not None and inner is not None and not self._answering:
            head = frame(self._pending, self._max_body)
            if head is None:
                return  # the rest is still coming
            if isinstance(head, Unframed):
                self._hand_over()
                return
            if head.body is None:
                # A body still coming: aiohttp reads it as it comes, under its body
                # deadline (408), and the next request starts after it.
                self._through = head.end - len(self._pending)
                inner.data_received(bytes(self._pending))
                self._pending.clear()
                return
            reply = lane.answer(head, self._client) if self._aiohttp_idle() else None
            wire = bytes(self._pending[: head.end]) if reply is None else b""
            del self._pending[: head.end]  # before _send, which may hand the rest over
            if reply is None:
                inner.data_received(wire)
            elif isinstance(reply, bytes):
                self._send(reply)
            else:
                self._answering = True
                asyncio.ensure_future(reply).add_done_callback(self._answered)

    def _answered(self, task: asyncio.Future[bytes]) -> None:
        self._answering = False
        if task.cancelled() or self._inner is None:
            return
        self._send(task.result())
        self._serve()
        self._deadline()

    def _send(self, reply: bytes) -> None:
        transport, inner = self._transport, self._inner
        if transport is None or inner is None or transport.is_closing():
            return
        transport.write(reply)
        # aiohttp's keep-alive timer closes a connection idle since its own last
        # answer: this one was not idle.
        loop = asyncio.get_running_loop()
        inner._next_keepalive_close_time = loop.time() + inner._keepalive_timeout
        if transport.get_write_buffer_size() > MAX_UNREAD:
            # A client that sends and does not read its answers: aiohttp's flow control
            # (it stops reading until the answers drain) takes the connection.
            self._hand_over()

    def _hand_over(self) -> None:
        self._lane = None
        data = bytes(self._pending)
        self._pending.clear()
        if data:
            self._inner.data_received(data)

    def _aiohttp_idle(self) -> bool:
        """No request queued or being answered by aiohttp: an answer now keeps order."""
        inner = self._inner
        return not inner._messages and not inner._request_in_progress

    def _deadline(self) -> None:
        """Run the read deadline while a request is in the making."""
        inner = self._inner
        if inner is None:
            return
        if self._lane is None:
            # aiohttp queues a request once its headers are parsed; until then the bytes
            # that came are a request in the making, and the deadline runs.
            if inner._messages or inner._request_in_progress:
                self._disarm()
            elif self._timer is None:
                self._arm()
        elif self._pending and not self._answering:
            if self._timer is None:
                self._arm()
        else:
            self._disarm()

    def eof_received(self) -> bool | None:
        if self._queued:  # requests the rota holds are answered before the stream ends
            self._turn()
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._pending.clear()
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
        if self._lane is not None and self._answering:
            return
        if self._transport is not None:
            self._transport.abort()


class GuardedSite(web.BaseSite):
    """web.TCPSite with the wrapper around each connection."""

    __slots__ = ("_gate", "_host", "_lane", "_max_body", "_port", "_read_timeout")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        gate: Gate,
        read_timeout: float,
        ssl_context: Any = None,
        lane: Lane | None = None,
        max_body: int = 0,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host, self._port = host, port
        self._gate, self._read_timeout = gate, read_timeout
        self._lane, self._max_body = lane, max_body

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        make = self._runner.server
        assert make is not None
        loop = asyncio.get_running_loop()
        gate, timeout, lane, max_body = self._gate, self._read_timeout, self._lane, self._max_body
        rota = Rota(TURN_S)  # the lane's turns, shared by every connection
        self._server = await loop.create_server(
            lambda: _Guarded(make, gate, timeout, rota, lane, max_body),
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=True,
        )
