"""One DNS message in, one out: validation, EDNS(0), caching and size limits (no I/O).

This is the dnslib path: it answers everything. The sockets try ``fast_udp`` and
``fast_tcp`` (wire.py) first, which serve standard queries from replies this path
encoded, and come here for the rest.

``respond`` returns the reply bytes, ``None`` to send nothing (garbage), or a
``Forward`` when the name is outside our zones and upstreams are configured; the
server then asks ``upstream`` and passes the result back through ``forwarded``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from jarvis_dns.dns.authority import Authority
from jarvis_dns.dns.records import Answer, refused
from jarvis_dns.dns.stats import Stats
from jarvis_dns.dns.wire import RING, Encoded, FastPath, name_wire, with_question_name

log = logging.getLogger(__name__)

# RFC 1035 4.2.1: without EDNS(0) a UDP message is at most 512 bytes, and RFC 6891
# 6.2.5 says a smaller advertised EDNS size is treated as 512.
CLASSIC_UDP = 512
TCP_MAX = 65535  # RFC 1035 4.2.2: the two-byte length prefix
EDNS_VERSION = 0
BADVERS = 16  # RFC 6891: extended rcode 16, carried as 1 in the OPT's upper bits
# Distinct (name, type) answers kept between registry changes. Random names from a
# scan would otherwise grow the cache without end; past this it simply starts over.
MAX_CACHED = 50_000
_CLASS_IN, _CLASS_ANY = 1, 255
# Zone transfers are not offered: the registry zone changes too often to mirror.
_REFUSED_TYPES = frozenset({QTYPE.AXFR, QTYPE.IXFR})
_RA_BIT = 0x80  # in the fourth byte of the header
_OUTSIDE = Answer(RCODE.REFUSED, authoritative=False)  # cache marker: no zone of ours


@dataclass(frozen=True, slots=True)
class Forward:
    """A query to hand to the upstream servers, and how big its reply may be."""

    request: DNSRecord
    wire: bytes
    limit: int


@dataclass(frozen=True, slots=True)
class _Edns:
    present: bool
    version: int = 0
    size: int = CLASSIC_UDP
    error: int = 0  # an rcode to answer with instead (FORMERR)


def _edns(msg: DNSRecord) -> _Edns:
    opts = [r for r in msg.ar if r.rtype == QTYPE.OPT]
    if not opts:
        return _Edns(False)
    if len(opts) > 1 or opts[0].rname.label:  # RFC 6891 6.1.1: one OPT, owner root
        return _Edns(True, error=RCODE.FORMERR)
    opt = opts[0]
    return _Edns(True, version=(opt.ttl >> 16) & 0xFF, size=max(opt.rclass, CLASSIC_UDP))


def qname_key(question: DNSQuestion) -> str:
    """The lower-case absolute text of a qname; ASCII-only folding, as DNS does."""
    labels = question.qname.label
    if not labels:
        return "."
    return (b".".join(labels).lower() + b".").decode("utf-8", "replace")


class Responder:
    def __init__(
        self, authority: Authority, stats: Stats, max_udp: int, forwarding: bool = False
    ) -> None:
        self.authority = authority
        self.stats = stats
        self.max_udp = max_udp
        self.forwarding = forwarding
        self._cache: dict[tuple[str, int], Answer] = {}
        self._turns: dict[tuple[str, int], int] = {}
        # Encoded replies for the sockets' fast path (wire.py), one cache per transport
        # since their size limits differ; filled from ``encoded`` and emptied with ours.
        counts = stats.counts
        self.fast_udp = FastPath(lambda wire: self.encoded(wire, True), counts, "queries_udp")
        self.fast_tcp = FastPath(lambda wire: self.encoded(wire, False), counts, "queries_tcp")

    def invalidate(self, *_: object) -> None:
        """Forget every cached answer: called on each registry change and zone reload."""
        self._cache.clear()
        self._turns.clear()
        self.fast_udp.clear()
        self.fast_tcp.clear()

    def respond(self, wire: bytes, udp: bool) -> bytes | Forward | None:
        self.stats.bump("queries_udp" if udp else "queries_tcp")
        try:
            msg = DNSRecord.parse(wire)
        except Exception:  # dnslib raises several kinds on garbage; all mean "drop"
            self.stats.bump("dropped")
            return None
        if msg.header.qr:
            self.stats.bump("dropped")  # a response: answering could start a loop
            return None
        try:
            return self._respond(msg, wire, udp)
        except Exception:
            log.exception("DNS query failed: %r", msg.questions[:1])
            self.stats.bump("errors")
            return self._error(msg, RCODE.SERVFAIL)

    def _respond(self, msg: DNSRecord, wire: bytes, udp: bool) -> bytes | Forward:
        if msg.header.opcode != OPCODE.QUERY:
            return self._error(msg, RCODE.NOTIMP, echo=len(msg.questions) == 1)
        if len(msg.questions) != 1:
            return self._error(msg, RCODE.FORMERR)
        edns = _edns(msg)
        if edns.error:
            return self._error(msg, edns.error)
        if edns.version > EDNS_VERSION:
            return self._badvers(msg)
        limit = _limit(edns, self.max_udp, udp)
        q = msg.questions[0]
        answer = self._lookup(q)
        if answer is _OUTSIDE and self.forwarding:
            self.stats.bump("forwarded")
            return Forward(msg, wire, limit)
        reply, truncated = self._pack(msg, answer, edns.present, limit, self._turn(q, answer))
        for name in _counters(answer, truncated):
            self.stats.bump(name)
        return reply

    def encoded(self, wire: bytes, udp: bool) -> Encoded | None:
        """For the fast path: the replies to a standard query, one per rotation step.

        None when the query is not a plain one this path answers from its cache (errors,
        forwards): the caller then goes through ``respond``. Counts nothing itself.
        """
        try:
            msg = DNSRecord.parse(wire)
            if msg.header.qr or msg.header.opcode != OPCODE.QUERY or len(msg.questions) != 1:
                return None
            edns = _edns(msg)
            if edns.error or edns.version > EDNS_VERSION:
                return None
            answer = self._lookup(msg.questions[0])
            if answer is _OUTSIDE and self.forwarding:
                return None
            return self._encode_all(msg, answer, edns.present, _limit(edns, self.max_udp, udp))
        except Exception:  # the dnslib path will meet it again, and log and count it
            return None

    def _encode_all(self, msg: DNSRecord, answer: Answer, edns: bool, limit: int) -> Encoded:
        first, truncated = self._pack(msg, answer, edns, limit, 0)
        counters = _counters(answer, truncated)
        count = len(answer.answer)
        if not answer.rotate or truncated or count < 2:
            return Encoded((first,), counters)
        steps = min(count, RING)
        turns = [i * count // steps for i in range(1, steps)]
        rest = [self._pack(msg, answer, edns, limit, turn)[0] for turn in turns]
        return Encoded((first, *rest), counters)

    def _lookup(self, q: DNSQuestion) -> Answer:
        if q.qclass not in (_CLASS_IN, _CLASS_ANY) or q.qtype in _REFUSED_TYPES:
            return refused()
        key = (qname_key(q), q.qtype)
        answer = self._cache.get(key)
        if answer is None:
            if len(self._cache) >= MAX_CACHED:
                self.invalidate()
            answer = self.authority.lookup(*key) or _OUTSIDE
            self._cache[key] = answer
        return answer

    def _turn(self, q: DNSQuestion, answer: Answer) -> int:
        if not answer.rotate or not answer.answer:
            return 0
        key = (qname_key(q), q.qtype)
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return turn % len(answer.answer)

    # -- building replies

    def _header(self, msg: DNSRecord, rcode: int, aa: bool = False) -> DNSHeader:
        return DNSHeader(
            id=msg.header.id,
            qr=1,
            opcode=msg.header.opcode,
            aa=int(aa),
            rd=msg.header.rd,
            ra=int(self.forwarding),
            rcode=rcode,
        )

    def _pack(
        self, msg: DNSRecord, answer: Answer, edns: bool, limit: int, turn: int
    ) -> tuple[bytes, bool]:
        """The reply and whether it was truncated (TC=1).

        Packed with the question lower-cased and the client's spelling put back after,
        the same bytes the fast path makes by patching a cached reply.
        """
        q = msg.questions[0]
        labels = q.qname.label
        lower = DNSQuestion(DNSLabel([label.lower() for label in labels]), q.qtype, q.qclass)
        opt = [EDNS0(udp_len=self.max_udp)] if edns else []
        reply = DNSRecord(
            self._header(msg, answer.rcode, answer.authoritative),
            questions=[lower],
            rr=_answer_records(lower.qname, answer, turn),
            auth=list(answer.authority),
            ar=[*answer.additional, *opt],
        )
        wire, truncated = _fit(reply, opt, limit)
        return with_question_name(wire, name_wire(labels)), truncated

    def _error(self, msg: DNSRecord, rcode: int, echo: bool = False) -> bytes:
        for name in _counters(Answer(rcode), truncated=False):
            self.stats.bump(name)
        questions = msg.questions[:1] if echo else []
        wire = bytes(DNSRecord(self._header(msg, rcode), questions=questions).pack())
        return wire

    def _badvers(self, msg: DNSRecord) -> bytes:
        self.stats.bump("badvers")
        opt = EDNS0(udp_len=self.max_udp, ext_rcode=BADVERS >> 4, version=EDNS_VERSION)
        reply = DNSRecord(self._header(msg, BADVERS & 0xF), questions=msg.questions, ar=[opt])
        wire = bytes(reply.pack())
        return wire

    # -- forwarded answers

    def forwarded(self, forward: Forward, reply: bytes | None) -> bytes:
        """The upstream's reply for the client, or SERVFAIL when none came."""
        if reply is None:
            return self._error(forward.request, RCODE.SERVFAIL, echo=True)
        # We offer recursion through the upstreams, whatever the upstream says of itself.
        reply = reply[:3] + bytes([reply[3] | _RA_BIT]) + reply[4:]
        if len(reply) <= forward.limit:
            return reply
        self.stats.bump("truncated")
        header = self._header(forward.request, RCODE.NOERROR)
        header.tc = 1
        ar = [EDNS0(udp_len=self.max_udp)] if _edns(forward.request).present else []
        return bytes(DNSRecord(header, questions=forward.request.questions, ar=ar).pack())


def _limit(edns: _Edns, max_udp: int, udp: bool) -> int:
    if not udp:
        return TCP_MAX
    return min(edns.size, max_udp) if edns.present else CLASSIC_UDP


_RCODE_COUNTERS = {
    RCODE.NXDOMAIN: "nxdomain",
    RCODE.REFUSED: "refused",
    RCODE.FORMERR: "formerr",
    RCODE.NOTIMP: "notimp",
    RCODE.SERVFAIL: "servfail",
}


def _counters(answer: Answer, truncated: bool) -> tuple[str, ...]:
    """The stats one reply bumps, besides the query counter."""
    name = _RCODE_COUNTERS.get(answer.rcode)
    if name is None and not answer.answer:
        name = "nodata"
    named = (name,) if name is not None else ()
    return (*named, "truncated") if truncated else named


def _answer_records(qname: DNSLabel, answer: Answer, turn: int) -> list[RR]:
    records = list(answer.answer)
    if answer.rotate and records:
        n = turn % len(records)
        records = records[n:] + records[:n]
    # Owners equal to the question take its spelling, so they compress onto it and read
    # back in the client's case (0x20 case mixing, draft-vixie-dnsext-dns0x20).
    return [
        RR(qname, r.rtype, r.rclass, r.ttl, r.rdata) if r.rname == qname else r for r in records
    ]


def _fit(reply: DNSRecord, opt: list[RR], limit: int) -> tuple[bytes, bool]:
    wire = bytes(reply.pack())
    if len(wire) <= limit:
        return wire, False
    # RFC 2181 9: dropping additional data needs no TC bit; try that first.
    reply.ar = list(opt)
    wire = bytes(reply.pack())
    if len(wire) <= limit:
        return wire, False
    # RFC 2181 9: too big anyway -> TC=1; the client retries over TCP (RFC 7766).
    reply.rr, reply.auth = [], []
    reply.header.tc = 1
    return bytes(reply.pack()), True
