"""The DNS sockets: UDP and TCP on every ``--dns`` address (asyncio; only bytes move here).

Every message goes to the responder's one ``answer``. Over UDP a standard query is
answered inside ``datagram_received`` (cache or hand encoder), with no queue; the
responder defers anything unusual (``LATER``), which waits in a bounded backlog and is
answered in batches, so a flood costs dropped datagrams (counted), never unbounded
memory. TCP follows RFC 7766: two-byte
length prefix, many queries per connection, pipelining (forwarded queries may be
answered out of order), an idle timeout, and caps on open connections, per client
address and in all. DNS over TLS (RFC 7858, ``--dot``) is the same over TLS.

Who a client is (access.py: ``--dns-allow``, ``--rrl-exempt``, ``--recursion-allow``) is
looked up once per message; a client with nothing to check (loopback, by default) is
answered as before, anyone else is "screened": REFUSED when not allowed, names to
forward REFUSED without recursion, and its UDP answers rate-limited (rrl.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from jarvis_dns.config import Config, split_hostport
from jarvis_dns.discovery import Discovery
from jarvis_dns.dns.access import PLAIN, Admission, Policy, Sources
from jarvis_dns.dns.compose import build
from jarvis_dns.dns.localnets import listening_hosts, own_networks
from jarvis_dns.dns.operations import Operations
from jarvis_dns.dns.proto import frame_size, framed, truncated, without_ra
from jarvis_dns.dns.responder import LATER, Forward, Later, Responder, Special
from jarvis_dns.dns.rrl import SEND, SLIP, RateLimiter
from jarvis_dns.dns.upstream import Upstream
from jarvis_dns.errors import ConfigError
from jarvis_dns.gate import Gate
from jarvis_dns.metrics.dns import RRL_DROPPED, SLIPPED, DnsCounts
from jarvis_dns.registry.events import EventSource

log = logging.getLogger(__name__)

DEFAULT_DNS_PORT = 9053
DOT_PORT = 853  # RFC 7858
# Queries waiting to be answered. At ~10k qps this is a fifth of a second of work;
# anything beyond is load we cannot serve in time, so it is dropped (UDP may drop).
MAX_UDP_BACKLOG = 2048
# Answer this many datagrams, then let the loop serve TCP and timers again.
UDP_BATCH = 64
# The kernel charges ~1 KiB per queued datagram, however small, so its default 208 KiB
# overflows at ~200 queries in flight: a burst a loaded server must absorb, not drop.
UDP_RECEIVE_BUFFER = 4 << 20
# Replies the kernel could not take yet; past this the client is flooding us.
MAX_UDP_WRITE_BUFFER = 1 << 20
MAX_FORWARDS_IN_FLIGHT = 512  # upstream queries outstanding, all clients together
# RFC 7766 6.2.3: idle connections should be closed after seconds, not minutes.
TCP_IDLE_S = 10.0
TCP_READ_S = 5.0  # a message whose length arrived must follow promptly; a TLS handshake too
MAX_PIPELINED = 32  # forwarded queries outstanding on one connection
STOP_GRACE_S = 1.0  # busy TCP connections get this long to finish on stop
_BIND_ATTEMPTS = 20  # port 0: UDP picks the port; TCP may find it taken and retry
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class _UdpProtocol(asyncio.DatagramProtocol):
    """Answers standard queries right here (``screen`` those of clients that are not
    plain); hands the rest to ``on_datagram``."""

    def __init__(
        self,
        on_datagram: Callable[[_UdpProtocol, bytes, Any], None],
        screen: Callable[[bytes, Any], bytes | Later | None],
        responder: Responder,
        sources: Sources,
        counts: DnsCounts,
    ) -> None:
        self.on_datagram = on_datagram
        self.screen = screen
        self.answer = responder.answer
        self.plain = sources.plain  # the same set, kept current by Sources
        self.counts = counts
        self.transport: asyncio.DatagramTransport | None = None
        self._buffered: Callable[[], int] = lambda: 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport; it acts as one.
        self.transport = cast(asyncio.DatagramTransport, transport)
        # Not in typeshed's DatagramTransport, but every asyncio/uvloop transport has it.
        self._buffered = getattr(transport, "get_write_buffer_size", self._buffered)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            if addr[0] in self.plain:  # all a plain client pays for the checks of access.py
                reply = self.answer(data, True, later=True)
            else:
                reply = self.screen(data, addr)
        except Exception:  # never die of a packet; the backlog's turn may still answer
            log.exception("UDP query from %s failed", addr)
            self.counts.errors.inc()
            reply = LATER
        if reply is LATER:
            self.on_datagram(self, data, addr)
        elif isinstance(reply, bytes):
            if self._buffered() > MAX_UDP_WRITE_BUFFER:
                self.counts.dropped.inc("send_buffer")
            elif self.transport is not None:
                self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away: nothing to do


@dataclass(slots=True)
class _Connection:
    idle: bool = True


class DnsServer:
    def __init__(
        self,
        responder: Responder | Discovery,
        events: EventSource,
        config: Config,
        *,
        upstream: Upstream | None = None,
        tcp_idle_s: float = TCP_IDLE_S,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        operations: Operations | None = None,
    ) -> None:
        """responder: what answers (``dns.build``); events: who tells of registry changes;
        tls: the context ``--dot`` serves (security.dot_tls); clock: the rate limiter's;
        operations: who takes UPDATE, zone transfers and TSIG (None: nobody, as before).

        A ``Discovery`` in place of the responder builds one from config (the form
        app.py used before ``dns.build``)."""
        if isinstance(responder, Discovery):
            responder = build(responder, None, config, upstream=upstream)
        assert tls is not None or not config.dot, "--dot needs a TLS context"
        self.config = config
        self.responder = responder
        self.tcp_idle_s = tcp_idle_s
        self.tls = tls
        self.operations = operations
        if operations is not None:
            responder.hand_over_operations()
        hosts = listening_hosts(config)
        policy = Policy.from_config(config, responder.forwarding, lambda: own_networks(hosts))
        self.sources = Sources(policy)
        self._rrl = RateLimiter(config.rrl_rps, config.rrl_slip, clock)
        self._gate = Gate(config.dns_tcp_max_connections, config.dns_tcp_max_per_client)
        self._events = events
        self._counts = responder.counts
        metrics = self._counts.metrics
        metrics.gauge("jarvis_dns_tcp_open", lambda: len(self._connections))
        metrics.gauge("jarvis_dns_udp_backlog", lambda: len(self._backlog))
        metrics.gauge("jarvis_dns_rrl_accounts", lambda: len(self._rrl))
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._addresses: list[tuple[str, int]] = []
        self._dot_addresses: list[tuple[str, int]] = []
        self._backlog: deque[tuple[_UdpProtocol, bytes, Any]] = deque()
        self._draining = False
        self._connections: dict[asyncio.Task[Any], _Connection] = {}
        self._forwards: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False

    # -- lifecycle

    async def start(self) -> None:
        self.reload_zones()
        try:
            for spec in self.config.dns:
                await self._bind(*split_hostport(spec, DEFAULT_DNS_PORT))
            for spec in self.config.dot:
                await self._bind_tls(*split_hostport(spec, DOT_PORT))
        except BaseException:
            await self.stop()
            raise
        self.responder.set_ns_addresses([_WILDCARDS.get(h, h) for h, _ in self._addresses])
        # Each registry change drops the answers it could alter: the next one is fresh.
        self._unsubscribe = self._events.subscribe(self.responder.changed)

    async def stop(self) -> None:
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        await self._drain_connections()
        await _cancel_all(set(self._forwards))
        for server in self._tcp:
            await server.wait_closed()
        self._udp, self._tcp = [], []

    async def _drain_connections(self) -> None:
        for task, conn in list(self._connections.items()):
            if conn.idle:
                task.cancel()
        busy = set(self._connections)
        if busy:
            await asyncio.wait(busy, timeout=STOP_GRACE_S)
        await _cancel_all(set(self._connections))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return list(self._addresses)

    @property
    def dot_addresses(self) -> list[tuple[str, int]]:
        return list(self._dot_addresses)

    def stats(self) -> dict[str, int]:
        """The "dns" object of /v1/health."""
        counts = self._counts.snapshot()
        counts["tcp_open"] = len(self._connections)
        counts["udp_backlog"] = len(self._backlog)
        counts["rrl_accounts"] = len(self._rrl)
        return counts

    def reload_zones(self) -> list[str]:
        """Re-read config.zones_dir; a broken file raises ZoneError and changes nothing."""
        return self.responder.reload_zones()

    # -- binding

    async def _bind(self, host: str, port: int) -> None:
        attempts = _BIND_ATTEMPTS if port == 0 else 1
        for attempt in range(attempts):
            udp = await self._bind_udp(host, port)
            actual = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._on_tcp, host, actual)
            except OSError as exc:
                udp.close()
                if attempt + 1 < attempts:
                    continue
                raise ConfigError.listening("DNS over TCP", _where(host, actual), exc) from None
            self._udp.append(udp)
            self._tcp.append(tcp)
            self._addresses.append((host, actual))
            return

    async def _bind_udp(self, host: str, port: int) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(
                    self._on_datagram, self._screen_udp, self.responder, self.sources, self._counts
                ),
                local_addr=(host, port),
            )
        except OSError as exc:
            raise ConfigError.listening("DNS over UDP", _where(host, port), exc) from None
        _grow_receive_buffer(transport.get_extra_info("socket"))
        return transport

    async def _bind_tls(self, host: str, port: int) -> None:
        try:
            server = await asyncio.start_server(
                lambda r, w: self._on_tcp(r, w, tls=True),
                host,
                port,
                ssl=self.tls,
                ssl_handshake_timeout=TCP_READ_S,
            )
        except OSError as exc:
            raise ConfigError.listening("DNS over TLS", _where(host, port), exc) from None
        self._tcp.append(server)
        self._dot_addresses.append((host, server.sockets[0].getsockname()[1]))

    # -- UDP

    def _on_datagram(self, protocol: _UdpProtocol, data: bytes, addr: Any) -> None:
        if len(self._backlog) >= MAX_UDP_BACKLOG:
            self._counts.dropped.inc("backlog")
            return
        self._backlog.append((protocol, data, addr))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        for _ in range(min(UDP_BATCH, len(self._backlog))):
            protocol, data, addr = self._backlog.popleft()
            try:
                self._answer_udp(protocol, data, addr)
            except Exception:  # never die of a packet
                log.exception("UDP query from %s failed", addr)
                self._counts.errors.inc()
        if self._backlog:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._draining = False

    def _answer_udp(self, protocol: _UdpProtocol, data: bytes, addr: Any) -> None:
        source = self.sources[addr[0]]
        reply = self._reply(data, True, source)
        if isinstance(reply, Forward):
            self._spawn_forward(reply, lambda wire: self._send_udp(protocol, wire, addr, source))
        elif isinstance(reply, bytes):
            self._send_udp(protocol, reply, addr, source)
        elif isinstance(reply, Special):
            send = partial(self._send_udp, protocol, addr=addr, source=source)
            self._spawn_special(reply, addr[0], send)

    def _screen_udp(self, data: bytes, addr: Any) -> bytes | Later | None:
        """datagram_received's answer for a client not known to be PLAIN."""
        source = self.sources[addr[0]]
        reply = self._screened(data, True, source, later=True)
        if isinstance(reply, bytes):
            return self._limited(reply, source)
        return LATER if reply is LATER else None

    def _limited(self, wire: bytes, source: Admission) -> bytes | None:
        """The UDP reply as response-rate limiting lets it go: whole, slipped or None."""
        if not source.limited:
            return wire
        verdict = self._rrl.verdict(source.prefix, wire)
        if verdict is SEND:
            return wire
        if verdict is SLIP:
            self._counts.rrl.inc(SLIPPED)
            return truncated(wire)
        self._counts.rrl.inc(RRL_DROPPED)
        return None

    def _send_udp(self, protocol: _UdpProtocol, reply: bytes, addr: Any, source: Admission) -> None:
        wire = self._limited(reply, source)
        if wire is None:
            return
        transport = protocol.transport
        if transport is None or transport.is_closing():
            return
        # Not in typeshed's DatagramTransport, but every asyncio/uvloop transport has it.
        buffered: int = getattr(transport, "get_write_buffer_size", lambda: 0)()
        if buffered > MAX_UDP_WRITE_BUFFER:
            self._counts.dropped.inc("send_buffer")
            return
        transport.sendto(wire, addr)

    # -- who asks

    def _reply(self, data: bytes, udp: bool, source: Admission) -> bytes | Forward | Special | None:
        """The answer to a message (the dnslib path included), as this client gets it."""
        if source is PLAIN:
            return self.answer(data, udp)
        reply = self._screened(data, udp, source)
        return None if reply is LATER else reply

    def _screened(
        self, data: bytes, udp: bool, source: Admission, later: bool = False
    ) -> bytes | Forward | Special | Later | None:
        """The answer for a client that is not PLAIN, before rate limiting."""
        if not source.allowed:
            return self.responder.refuse(data, udp)
        reply = self.responder.answer(data, udp, later=later, recursion=source.recursion)
        if isinstance(reply, bytes) and not source.recursion:
            return without_ra(reply)  # recursion is not available to this client
        return reply

    # -- forwarding

    def _spawn_forward(
        self, forward: Forward, send: Callable[[bytes], None]
    ) -> asyncio.Task[None] | None:
        if len(self._forwards) >= MAX_FORWARDS_IN_FLIGHT:
            self._counts.dropped.inc("forwards")
            return None
        task = asyncio.get_running_loop().create_task(self._forward(forward, send))
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)
        return task

    async def _forward(self, forward: Forward, send: Callable[[bytes], None]) -> None:
        upstream = self.responder.upstream
        assert upstream is not None
        try:
            reply = await upstream.query(forward.wire)
            send(self.responder.forwarded(forward, reply))
        except Exception:
            log.exception("forwarding failed")
            self._counts.errors.inc()

    # -- UPDATE, transfers, TSIG (operations.py)

    def _spawn_special(self, special: Special, source: str, send: Callable[[bytes], None]) -> None:
        """Over UDP: one reply (an UPDATE waits for its commit), sent when it is ready."""
        if len(self._forwards) >= MAX_FORWARDS_IN_FLIGHT:
            self._counts.dropped.inc("forwards")  # the same bound as forwarded queries
            return
        task = asyncio.get_running_loop().create_task(self._special_udp(special, source, send))
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)

    async def _special_udp(
        self, special: Special, source: str, send: Callable[[bytes], None]
    ) -> None:
        assert self.operations is not None
        try:
            async for wire in self.operations.handle(special.wire, source, udp=True):
                send(wire)
                break  # UDP carries one message; AXFR over UDP is refused anyway
        except Exception:
            log.exception("DNS operation from %s failed", source)
            self._counts.errors.inc()

    async def _special_tcp(
        self, special: Special, source: str, writer: asyncio.StreamWriter
    ) -> None:
        """Over TCP: every message (a transfer's many), each written in turn."""
        assert self.operations is not None
        try:
            async for wire in self.operations.handle(special.wire, source, udp=False):
                writer.write(framed(wire))
                async with asyncio.timeout(TCP_READ_S):
                    await writer.drain()
        except (OSError, TimeoutError):
            raise  # the connection is gone: _on_tcp closes it
        except Exception:
            log.exception("DNS operation from %s failed", source)
            self._counts.errors.inc()

    # -- TCP

    async def _on_tcp(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool = False
    ) -> None:
        """One connection, TCP or TLS (handshake done): over a cap it is closed at once."""
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        if task is None or self._stopping or not self._gate.admit(client):
            self._counts.tcp_rejected.inc()
            writer.close()
            return
        conn = _Connection()
        self._connections[task] = conn
        self._counts.tcp_connections.inc()
        if tls:
            self._counts.tls_connections.inc()
        pending: set[asyncio.Task[None]] = set()
        try:
            await self._serve_tcp(reader, writer, conn, pending, client)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client left, sent a short message, or went quiet
        except asyncio.CancelledError:
            # stop() cancelled us; asyncio's stream callback would log a cancelled
            # handler as an error, so end normally. Any other cancel propagates.
            if not self._stopping:
                raise
        finally:
            await _cancel_all(pending)
            del self._connections[task]
            self._gate.release(client)
            writer.close()

    async def _serve_tcp(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: _Connection,
        pending: set[asyncio.Task[None]],
        client: str,
    ) -> None:
        source = self.sources[client]
        while not self._stopping:
            conn.idle = True
            async with asyncio.timeout(self.tcp_idle_s):
                size = frame_size(await reader.readexactly(2))
            conn.idle = False
            async with asyncio.timeout(TCP_READ_S):
                data = await reader.readexactly(size)
            reply = self._reply(data, False, source)
            if isinstance(reply, Forward):
                await self._pipeline(reply, writer, pending)
            elif isinstance(reply, bytes):
                writer.write(framed(reply))
            elif isinstance(reply, Special):
                await self._special_tcp(reply, client, writer)
            async with asyncio.timeout(TCP_READ_S):
                await writer.drain()

    def answer(self, data: bytes, udp: bool) -> bytes | Forward | Special | None:
        """What the sockets answer to one message (for tests: no socket needed)."""
        reply = self.responder.answer(data, udp)
        return None if reply is LATER else reply

    async def _pipeline(
        self, forward: Forward, writer: asyncio.StreamWriter, pending: set[asyncio.Task[None]]
    ) -> None:
        if len(pending) >= MAX_PIPELINED:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)

        def send(wire: bytes) -> None:
            if not writer.is_closing():
                writer.write(framed(wire))  # one write per message: frames never interleave

        task = self._spawn_forward(forward, send)
        if task is not None:
            pending.add(task)
            task.add_done_callback(pending.discard)


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _grow_receive_buffer(sock: Any) -> None:
    """Ask for UDP_RECEIVE_BUFFER; the kernel caps it at net.core.rmem_max."""
    with contextlib.suppress(OSError, AttributeError):
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < UDP_RECEIVE_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
