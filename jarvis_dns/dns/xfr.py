"""Zone transfers: AXFR (RFC 5936) and IXFR (RFC 1995) as streams of messages (pure).

``Transfers`` holds what a transfer needs beyond the answers: the registry zone listed
whole (content.py) and the journal of its changes (journal.py), kept current by the
change path like the DNS cache. Its ``axfr`` and ``ixfr`` give the records in the order
the RFCs want (the SOA first and last; for IXFR the old SOA, what went, the new SOA,
what came) and ``messages`` packs them, names compressed, into messages a secondary
reads one after the other over TCP. Signing them (TSIG) is the caller's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from jarvis_dns.dns import proto
from jarvis_dns.dns.content import Record, ZoneContent, from_dnslib, static_listing
from jarvis_dns.dns.journal import Delta, Journal, Tracker
from jarvis_dns.dns.packer import Packer
from jarvis_dns.dns.serial import serial_gt, serial_of
from jarvis_dns.dns.zones import StaticZone
from jarvis_dns.models import Event

# Bytes of records per message. RFC 5936 allows up to 64 KiB; BIND and Knot read any
# size. Under 16 KiB every name stays where a compression pointer (14 bits) can reach
# it, and each write (and TSIG digest) is short, so a transfer of 100,000 instances
# interleaves with the queries the event loop serves meanwhile.
MESSAGE_LIMIT = 16_000
_SOA_TIMES = 20  # the five 32-bit SOA timers close its rdata; the serial comes first
_COUNTS = struct.Struct("!HHHH")


def soa_serial(soa: Record) -> int:
    return int.from_bytes(soa[3][-_SOA_TIMES : -_SOA_TIMES + 4], "big")


def with_serial(soa: Record, serial: int) -> Record:
    rdata = soa[3]
    moved = rdata[:-_SOA_TIMES] + serial.to_bytes(4, "big") + rdata[-_SOA_TIMES + 4 :]
    return (soa[0], soa[1], soa[2], moved)


class Transfers:
    """The transferable zones: the registry zone (with its journal) and the zone files."""

    def __init__(
        self,
        content: ZoneContent,
        journal_size: int,
        static: Callable[[], Mapping[str, StaticZone]],
    ) -> None:
        self.content = content
        self.zone = content.authority.zone
        self.tracker = Tracker(content)
        self.journal = Journal(journal_size, content.discovery.index)
        self._static = static

    # -- kept current by the change path

    def changed(self, events: Sequence[Event]) -> None:
        self.journal.record(self.content.discovery.index, self.tracker.changed(events))

    def reloaded(self) -> None:
        """The zone files changed: fallbacks may differ; the journal starts again."""
        self.tracker.reset()
        self.journal.restart(self.content.discovery.index)

    # -- what a transfer sends

    def origin_of(self, qname: str) -> str | None:
        """The zone a transfer question names (its apex), or None."""
        if qname == self.zone or qname in self._static():
            return qname
        return None

    def axfr(self, origin: str) -> tuple[Record, Iterator[Record]]:
        """The zone's SOA and every other record, for [SOA, records..., SOA]."""
        if origin == self.zone:
            snapshot = self.content.snapshot()
            return snapshot.soa, self.content.listing(snapshot)
        soa, others = static_listing(self._static()[origin])
        return soa, iter(others)

    def ixfr(self, origin: str, serial: int) -> tuple[bool, Iterator[Record]]:
        """The records of an IXFR reply to a client at ``serial``: only the SOA when it
        is up to date, the condensed difference when the journal reaches back to it,
        else the whole zone (RFC 1995 4); and whether it is not the whole zone."""
        soa, rest, delta = self._ixfr(origin, serial)
        return rest is None, _ixfr_records(soa, serial, rest, delta)

    def _ixfr(
        self, origin: str, serial: int
    ) -> tuple[Record, Iterator[Record] | None, Delta | None]:
        if origin != self.zone:
            soa, rest = self.axfr(origin)
            up_to_date = not serial_gt(soa_serial(soa), serial)
            return soa, None if up_to_date else rest, None
        snapshot = self.content.snapshot()  # the SOA and, if needed, the whole zone
        current = serial_of(snapshot.index)
        if not serial_gt(current, serial):
            return snapshot.soa, None, None
        delta = self.journal.since(serial) if self.journal.index == snapshot.index else None
        if delta is None:
            return snapshot.soa, self.content.listing(snapshot), None
        return snapshot.soa, None, delta

    def up_to_date_soa(self, origin: str) -> Record:
        """The zone's current SOA (the whole answer to an IXFR over UDP, RFC 1995 2, and
        what a NOTIFY carries); KeyError for a zone file that is gone."""
        if origin == self.zone:
            return self.content.soa()
        soa = self._static()[origin].soa
        assert soa is not None  # load_file requires one
        return from_dnslib(soa)


def _ixfr_records(
    soa: Record, serial: int, rest: Iterator[Record] | None, delta: Delta | None
) -> Iterator[Record]:
    yield soa
    if delta is None:
        if rest is not None:
            yield from rest
            yield soa
        return
    yield with_serial(soa, serial)
    yield from delta.removed
    yield soa
    yield from delta.added
    yield soa


def messages(
    header: bytes, question: bytes, records: Iterable[Record], limit: int = MESSAGE_LIMIT
) -> Iterator[bytes]:
    """Records packed into messages of at most ``limit`` bytes (one record may make a
    message larger), the question in the first only (RFC 5936 2.2.1).

    header: the reply's ID and flags (4 bytes); question: the question as asked."""
    packer, count, first = _start(header, question), 0, True
    for owner, rtype, ttl, rdata in records:
        mark = len(packer.buf)
        packer.record(owner, rtype, ttl, rdata)
        if len(packer.buf) > limit and count:
            del packer.buf[mark:]
            yield _finish(packer, count, first)
            packer, count, first = _start(header, b""), 0, False
            packer.record(owner, rtype, ttl, rdata)
        count += 1
    yield _finish(packer, count, first)


def _start(header: bytes, question: bytes) -> Packer:
    return Packer(header + bytes(8) + question)


def _finish(packer: Packer, count: int, first: bool) -> bytes:
    packer.buf[4:12] = _COUNTS.pack(1 if first else 0, count, 0, 0)
    return bytes(packer.buf)


def reply_header(query_id: int, rd: bool, rcode: int = proto.NOERROR) -> bytes:
    """ID and flags of a transfer reply: QR, AA, the query's RD, the rcode."""
    flags = proto.QR | proto.AA | (proto.RD if rd else 0)
    return query_id.to_bytes(2, "big") + bytes((flags, rcode))
