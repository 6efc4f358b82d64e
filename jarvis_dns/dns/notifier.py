"""Sends the NOTIFYs the schedule (notify.py) decides, and hears the answers (asyncio).

One connected UDP socket per secondary (``--notify HOST:PORT``), from the DNS listen
address when it is a specific one of the same family, since secondaries accept NOTIFY
only from their primaries' addresses. A NOTIFY carries the zone's current SOA in the
answer section (RFC 1996 3.7), so a secondary can tell at once whether to transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from jarvis_dns.config import split_hostport
from jarvis_dns.dns import proto
from jarvis_dns.dns.content import Record
from jarvis_dns.dns.notify import Clock, NotifySchedule, Slot, Target
from jarvis_dns.dns.packer import Packer
from jarvis_dns.errors import ConfigError
from jarvis_dns.models import Event

log = logging.getLogger(__name__)
NOTIFY_OPCODE = 4  # RFC 1996
_NOTIFY_FLAGS = bytes(((NOTIFY_OPCODE << 3) | proto.AA, 0))
_ONE_QUESTION_ONE_ANSWER = b"\x00\x01\x00\x01\x00\x00\x00\x00"
DEFAULT_NOTIFY_PORT = 53


def parse_targets(specs: Sequence[str]) -> list[Target]:
    """``--notify HOST:PORT`` values; the host must be an address (NOTIFY is answered
    from it, and a name could change under a running server)."""
    targets = []
    for spec in specs:
        host, port = split_hostport(spec, DEFAULT_NOTIFY_PORT)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"--notify {spec!r}: want an IP address and a port") from None
        if port == 0:
            raise ConfigError(f"--notify {spec!r}: want a port")
        targets.append((host, port))
    return targets


def notify_message(message_id: int, soa: Record) -> bytes:
    zone = soa[0]
    packer = Packer(
        message_id.to_bytes(2, "big") + _NOTIFY_FLAGS + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    )
    packer.name(zone)
    packer.buf += proto.SOA.to_bytes(2, "big") + proto.CLASS_IN.to_bytes(2, "big")
    packer.record(*soa)
    return bytes(packer.buf)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, heard: Callable[[bytes], None]) -> None:
        self.heard = heard
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.heard(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable: the secondary is down; the retries go on


class Notifier:
    def __init__(
        self,
        targets: Sequence[Target],
        soa: Callable[[str], Record],
        zone: str,
        source: str = "",
        clock: Clock = time.monotonic,
    ) -> None:
        """soa(zone): the zone's current SOA record; zone: the registry zone."""
        self.schedule = NotifySchedule(targets, clock)
        self.zone = zone
        self._soa = soa
        self.source = source  # the DNS listen address: NOTIFY goes from there
        self._clock = clock
        self._endpoints: dict[Target, _Endpoint] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for target in self.schedule.targets:
            _, endpoint = await loop.create_datagram_endpoint(
                lambda t=target: _Endpoint(lambda data: self._heard(t, data)),  # type: ignore[misc]
                remote_addr=target,
                local_addr=self._local_for(target[0]),
            )
            self._endpoints[target] = endpoint
        self.schedule.changed(self.zone)  # a secondary may have missed changes while we were down
        self._task = asyncio.create_task(self._run(), name="notify secondaries")

    def _local_for(self, host: str) -> tuple[str, int] | None:
        try:
            source = ipaddress.ip_address(self.source)
        except ValueError:
            return None
        if source.is_unspecified or source.version != ipaddress.ip_address(host).version:
            return None
        return (self.source, 0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    # -- told of changes

    def changed(self, events: Sequence[Event]) -> None:
        self.schedule.changed(self.zone)
        self._wake.set()

    def reloaded(self, zones: Sequence[str]) -> None:
        for zone in zones:
            self.schedule.changed(zone)
        self._wake.set()

    # -- the loop

    async def _run(self) -> None:
        while True:
            for slot in self.schedule.due():
                self._send(slot)
            due = self.schedule.next_due()
            timeout = None if due is None else max(0.0, due - self._clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _send(self, slot: Slot) -> None:
        target, zone = slot
        message_id = secrets.randbelow(1 << 16)
        self.schedule.sent(slot, message_id)
        endpoint = self._endpoints.get(target)
        try:
            soa = self._soa(zone)
        except KeyError:  # a zone file that was removed on reload
            self.schedule.answered(slot, message_id)
            return
        if endpoint is None or endpoint.transport is None:
            return
        endpoint.transport.sendto(notify_message(message_id, soa))
        log.debug("NOTIFY %s to %s:%d", zone, *target)

    def _heard(self, target: Target, data: bytes) -> None:
        if len(data) < proto.HEADER or not data[2] & proto.QR:
            return
        if (data[2] & proto.OPCODE_MASK) >> 3 != NOTIFY_OPCODE:
            return
        message_id = int.from_bytes(data[:2], "big")
        slot = self.schedule.waiting_for(target, message_id)
        if slot is None:
            return
        rcode = data[3] & 0x0F
        if rcode != proto.NOERROR:
            log.warning("NOTIFY %s: %s:%d answered rcode %d; retrying", slot[1], *target, rcode)
            return
        self.schedule.answered(slot, message_id)
