"""Forwarding of names outside our zones to the ``--upstream`` servers.

Each query goes over UDP from a fresh socket (a random source port and a random ID,
so a spoofed reply has to guess both), then over TCP when the reply is truncated.
Upstreams are tried in order within one overall deadline; when none answers in time
the caller turns ``None`` into SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

from jarvis_dns.config import split_hostport
from jarvis_dns.dns.proto import HEADER, TC, frame_size, framed, is_reply_to

DNS_PORT = 53


def parse_upstreams(values: list[str]) -> list[tuple[str, int]]:
    """'ip[:port]' and '[v6]:port' strings -> addresses; raises ConfigError."""
    return [split_hostport(v, DNS_PORT) for v in values]


class _OneReply(asyncio.DatagramProtocol):
    """Takes the first datagram that is a reply to our ID; ignores anything else."""

    def __init__(self, query_id: bytes) -> None:
        self.query_id = query_id
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if is_reply_to(data, self.query_id) and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


class Upstream:
    def __init__(self, servers: list[tuple[str, int]], timeout_s: float) -> None:
        self.servers = servers
        self.timeout_s = timeout_s

    async def query(self, wire: bytes) -> bytes | None:
        """The first upstream reply to this query (with its own ID back), or None."""
        if len(wire) < HEADER or not self.servers:
            return None
        deadline = time.monotonic() + self.timeout_s
        for i, server in enumerate(self.servers):
            # Share what is left of the deadline among the servers not yet tried.
            budget = (deadline - time.monotonic()) / (len(self.servers) - i)
            if budget <= 0:
                break
            reply = await self._try(server, wire, budget)
            if reply is not None:
                return wire[:2] + reply[2:]
        return None

    async def _try(self, server: tuple[str, int], wire: bytes, budget: float) -> bytes | None:
        query_id = secrets.token_bytes(2)
        ours = query_id + wire[2:]
        try:
            async with asyncio.timeout(budget):
                reply = await _udp(server, ours, query_id)
                if reply[2] & TC:
                    reply = await _tcp(server, ours, query_id)
                return reply
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            return None


async def _udp(server: tuple[str, int], wire: bytes, query_id: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _OneReply(query_id), remote_addr=server
    )
    try:
        transport.sendto(wire)
        return await protocol.reply
    finally:
        transport.close()


async def _tcp(server: tuple[str, int], wire: bytes, query_id: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*server)
    try:
        writer.write(framed(wire))
        await writer.drain()
        reply = await reader.readexactly(frame_size(await reader.readexactly(2)))
        if len(reply) < HEADER or reply[:2] != query_id:
            raise ValueError("upstream TCP reply does not match the query")
        return reply
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
