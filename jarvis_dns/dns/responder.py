"""One DNS message in, one out: the answer cache, the hand encoder, dnslib (no I/O).

``answer`` is the one entry. A standard query (``classify``) is answered from the
answer cache (cache.py); on a miss, the hand encoder (encode.py) makes the reply from
the view, and only what it declines (zone files, CNAMEs) is packed by dnslib. Anything
unusual (garbage, other opcodes, EDNS options and versions, forwarded names) takes the
dnslib path, ``respond``, which answers everything and is what the others must equal
byte for byte (tests run every DNS test through all three ways).

``answer`` returns the reply bytes, ``None`` to send nothing (garbage), or a
``Forward`` when the name is outside our zones and upstreams are configured; the
server then asks ``upstream`` and passes the result back through ``forwarded``.

Once ``hand_over_operations`` was called (app.py does, with ``--tsig-key`` or
``--transfer-allow``), UPDATE messages, AXFR and IXFR questions and TSIG-signed messages
come back as ``Special``: the server passes them, with the source address, to
operations.py. Only the dnslib path looks for them, so standard queries pay nothing.

``changed`` is told of every applied batch: it drops what the batch's services could
change (their names, ``_services`` when one appeared or went), never everything.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from jarvis_dns.discovery import Discovery
from jarvis_dns.dns import names, proto
from jarvis_dns.dns.authority import Authority
from jarvis_dns.dns.cache import AnswerCache
from jarvis_dns.dns.encode import EVERY, MEMBERS, STATIC, HandEncoder, Made
from jarvis_dns.dns.packer import name_wire
from jarvis_dns.dns.proto import BADVERS, CLASSIC_UDP, EDNS_VERSION, HEADER, TCP_MAX
from jarvis_dns.dns.query import Query, classify
from jarvis_dns.dns.records import Answer, pick_for_udp, refused
from jarvis_dns.dns.serial import SERIAL_MODULUS
from jarvis_dns.dns.upstream import Upstream
from jarvis_dns.dns.zones import ZoneSet
from jarvis_dns.metrics import Metrics
from jarvis_dns.metrics.dns import (
    DNS_ALLOW,
    DROPPED_AT,
    FORWARDED_AT,
    OPERATION_AT,
    RECURSION,
    REFUSED_AT,
    DnsCounts,
    outcome,
)
from jarvis_dns.metrics.families import Sample
from jarvis_dns.models import Event

log = logging.getLogger(__name__)

# Distinct (name, type) answers kept by the dnslib path. Random names from a scan
# would otherwise grow the cache without end; past this it simply starts over.
MAX_CACHED = 50_000
# Zone transfers are refused unless operations.py takes them (--transfer-allow).
_REFUSED_TYPES = frozenset({QTYPE.AXFR, QTYPE.IXFR})
_UPDATE_OPCODE = 5  # RFC 2136
_OUTSIDE = Answer(RCODE.REFUSED, authoritative=False)  # cache marker: no zone of ours
_LIMITED_KINDS = frozenset({names.Kind.SERVICE, names.Kind.SUBTYPE, names.Kind.HOST})
_SCOPED_KINDS = frozenset(
    {
        names.Kind.SERVICE,
        names.Kind.SERVICE_INSTANCE,
        names.Kind.HOST,
        names.Kind.INSTANCE_HOST,
        names.Kind.SUBTYPE,
        names.Kind.SUB,
    }
)


class Later(enum.Enum):
    LATER = "later"


# answer(..., later=True): this message needs the dnslib path; queue it, ask again.
LATER = Later.LATER


@dataclass(frozen=True, slots=True)
class Forward:
    """A query to hand to the upstream servers, and how big its reply may be."""

    request: DNSRecord
    wire: bytes
    limit: int


@dataclass(frozen=True, slots=True)
class Special:
    """A message for operations.py: UPDATE, a zone transfer, or TSIG-signed."""

    wire: bytes


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


def limit_for(edns: bool, size: int, max_udp: int, udp: bool) -> int:
    """How big a reply may be: TCP's maximum, the EDNS size up to ours, or 512."""
    if not udp:
        return TCP_MAX
    return min(max(size, CLASSIC_UDP), max_udp) if edns else CLASSIC_UDP


def scope_of(zone: str, qname: str) -> str:
    """What a registry-zone name's answer depends on (see encode.py)."""
    nq = names.parse(qname, zone)
    if nq is None or nq.kind is names.Kind.UDP:
        return STATIC
    if nq.kind in _SCOPED_KINDS:
        return nq.service
    if nq.kind in (names.Kind.SERVICES, names.Kind.TCP):
        return MEMBERS
    return names.NS_LABEL  # the apex and ns.Z: their glue follows a service "ns"


class Responder:
    def __init__(
        self,
        authority: Authority,
        hand: HandEncoder | None,
        max_udp: int,
        *,
        zones: ZoneSet | None = None,
        upstream: Upstream | None = None,
        cache: bool = True,
        udp_limit: int = 0,
        counts: DnsCounts | None = None,
    ) -> None:
        """hand: None sends every query the dnslib way (``--no-fast-path``); cache:
        False encodes every reply anew (measures the miss path); counts: where every
        message is counted (a private one when None)."""
        self.authority = authority
        self.hand = hand
        self.counts = counts or DnsCounts(Metrics())
        self.max_udp = max_udp
        self.zones = zones
        self.upstream = upstream
        self.forwarding = upstream is not None
        self.udp_limit = udp_limit
        self.special = False  # UPDATE, transfers and TSIG go to operations.py
        self.discovery: Discovery = authority.records.discovery
        self._cache: dict[tuple[str, int], Answer] = {}
        self._cache_scopes: dict[str, list[tuple[str, int]]] = {}
        self._turns: dict[tuple[str, int], int] = {}
        self._hand_turns: dict[bytes, int] = {}
        # Encoded replies, one cache per transport since their size limits differ.
        on = cache and hand is not None
        self.udp_cache = AnswerCache(self.counts.hits[True]) if on else None
        self.tcp_cache = AnswerCache(self.counts.hits[False]) if on else None
        self._live = set(self.discovery.live_services())
        self.counts.metrics.reading("jarvis_dns_answers_total", self._answers_by_service)

    def _answers_by_service(self) -> list[Sample]:
        """Answers from the caches for names of one service (not counted without them)."""
        found: dict[str, int] = {}
        for cache in self._caches():
            for scope, n in cache.answers().items():
                if scope not in (STATIC, MEMBERS, EVERY):
                    found[scope] = found.get(scope, 0) + n
        return [((svc,), float(n)) for svc, n in found.items()]

    # -- what changes the answers

    def invalidate(self, *_: object) -> None:
        """Forget every cached answer (zone reloads, start-up)."""
        self._cache.clear()
        self._cache_scopes.clear()
        self._turns.clear()
        self._hand_turns.clear()
        self._live = set(self.discovery.live_services())
        for cache in self._caches():
            cache.clear()
            cache.serial = self._serial()

    def changed(self, events: Sequence[Event]) -> None:
        """After a batch: drop what its services could change, and move the serial."""
        touched = {event.service_type for event in events}
        scopes = {*touched, EVERY}
        for svc in touched:
            live = self.discovery.has_live(svc)  # O(1): the view counts them
            if live != (svc in self._live):
                scopes.add(MEMBERS)
                (self._live.add if live else self._live.discard)(svc)
        self._drop(scopes)

    def _drop(self, scopes: set[str]) -> None:
        serial = self._serial()
        for cache in self._caches():
            cache.drop(scopes)
            cache.serial = serial
        for scope in scopes:
            for key in self._cache_scopes.pop(scope, ()):
                self._cache.pop(key, None)
                self._turns.pop(key, None)

    def reload_zones(self) -> list[str]:
        """Re-read the zone files; a broken file raises ZoneError and changes nothing."""
        loaded = self.zones.reload() if self.zones is not None else []
        if self.zones is not None:
            self.authority.zones = self.zones.zones
            if self.hand is not None:
                self.hand.set_static_origins(list(self.zones.zones))
        self.invalidate()
        return loaded

    def set_ns_addresses(self, hosts: list[str]) -> None:
        """The addresses the server listens on: ns.Z's A/AAAA and the NS glue."""
        self.authority.records.ns_addresses = list(dict.fromkeys(hosts))
        self.invalidate()

    def hand_over_operations(self) -> None:
        """From now on answer UPDATE, AXFR, IXFR and TSIG-signed messages with
        ``Special`` (the server hands them to operations.py)."""
        self.special = True
        if self.hand is not None:
            self.hand.transfers = True
        self.invalidate()

    def _caches(self) -> list[AnswerCache]:
        return [c for c in (self.udp_cache, self.tcp_cache) if c is not None]

    def _serial(self) -> int:
        return self.discovery.index % SERIAL_MODULUS

    # -- the one entry

    def answer(
        self, data: bytes, udp: bool, *, later: bool = False, recursion: bool = True
    ) -> bytes | Forward | Special | Later | None:
        """What to send back for one message (see the module docstring).

        later: return ``LATER`` instead of taking the dnslib path, so that the caller
        answers cheap queries at once and queues the rest. recursion: False for a client
        outside --recursion-allow, whose names outside our zones are REFUSED, not
        forwarded (they never reach the caches: forwarded names are declined there)."""
        cache = self.udp_cache if udp else self.tcp_cache
        if cache is not None:
            reply = cache.hit(data)  # counts itself
            if reply is not None:
                return reply
        q = classify(data) if self.hand is not None else None
        if q is None:
            return LATER if later else self.respond(data, udp, recursion)
        if cache is not None:
            reply = self._through_cache(cache, q, udp)
            if reply is not None:
                return reply
            return LATER if later else self.respond(data, udp, recursion)
        assert self.hand is not None
        limit = limit_for(q.edns, q.size, self.max_udp, udp)
        key = q.key
        turn = self._hand_turns.get(key, 0)
        made = self.hand.encode(q, limit, udp, turn)
        if made is None:
            return LATER if later else self.respond(data, udp, recursion)
        if made.cycle > 1:
            if len(self._hand_turns) >= MAX_CACHED:
                self._hand_turns.clear()
            self._hand_turns[key] = turn + 1
        self.counts.taken[udp][made.outcome] += 1
        reply = made.reply  # its question lower-cased: spelled back as the client did
        return reply[:HEADER] + data[HEADER : q.name_end] + reply[q.name_end :]

    def _through_cache(self, cache: AnswerCache, q: Query, udp: bool) -> bytes | None:
        """The reply, made and kept; None when the dnslib path must answer."""
        key = q.key
        if cache.declined(key):
            return None
        made = self._made(q, udp, 0)
        if made is None:
            cache.decline(key)
            return None
        cache.store(q.data, key, q.question_end, made, partial(self._remade, q, udp))
        reply = cache.fresh(q.data)
        if reply is not None:
            self.counts.taken[udp][made.outcome] += 1
        return reply

    def _remade(self, q: Query, udp: bool, turn: int) -> Made:
        made = self._made(q, udp, turn)
        assert made is not None  # it was made for turn 0 from the same view
        return made

    def _made(self, q: Query, udp: bool, turn: int) -> Made | None:
        """The reply by hand, else packed by dnslib; None when only ``respond`` can."""
        limit = limit_for(q.edns, q.size, self.max_udp, udp)
        assert self.hand is not None
        made = self.hand.encode(q, limit, udp, turn)
        return made if made is not None else self._dnslib_made(q, limit, udp, turn)

    # -- the dnslib path

    def respond(
        self, wire: bytes, udp: bool, recursion: bool = True
    ) -> bytes | Forward | Special | None:
        reply, at = self._respond_any(wire, udp, recursion)
        self.counts.taken[udp][at] += 1
        return reply

    def _respond_any(
        self, wire: bytes, udp: bool, recursion: bool
    ) -> tuple[bytes | Forward | Special | None, int]:
        """The reply and its outcome (metrics.dns)."""
        if self.special and _is_update(wire):
            # Before dnslib, which cannot parse UPDATE's empty RRs.
            return Special(wire), OPERATION_AT
        try:
            msg = DNSRecord.parse(wire)
        except Exception:  # dnslib raises several kinds on garbage; all mean "drop"
            return None, DROPPED_AT
        if msg.header.qr:
            return None, DROPPED_AT  # a response: answering could start a loop
        if self.special and _is_special(msg):
            return Special(wire), OPERATION_AT
        try:
            return self._respond(msg, wire, udp, recursion)
        except Exception:
            log.exception("DNS query failed: %r", msg.questions[:1])
            self.counts.errors.inc()
            return self._error(msg, RCODE.SERVFAIL), _failed(RCODE.SERVFAIL)

    def _respond(
        self, msg: DNSRecord, wire: bytes, udp: bool, recursion: bool
    ) -> tuple[bytes | Forward, int]:
        if msg.header.opcode != OPCODE.QUERY:
            echo = len(msg.questions) == 1
            return self._error(msg, RCODE.NOTIMP, echo=echo), _failed(RCODE.NOTIMP)
        if len(msg.questions) != 1:
            return self._error(msg, RCODE.FORMERR), _failed(RCODE.FORMERR)
        edns = _edns(msg)
        if edns.error:
            return self._error(msg, edns.error), _failed(edns.error)
        if edns.version > EDNS_VERSION:
            return self._badvers(msg), _failed(BADVERS)
        limit = limit_for(edns.present, edns.size, self.max_udp, udp)
        q = msg.questions[0]
        answer = self._lookup(q)
        if answer is _OUTSIDE and self.forwarding:
            if recursion:
                return Forward(msg, wire, limit), FORWARDED_AT
            self.counts.refusals.inc(RECURSION)  # and REFUSED, as without upstreams
        answer, turn = self._turned(q, answer, udp)
        reply, truncated = self._pack(msg, answer, edns.present, limit, turn)
        return reply, _outcome(answer, truncated)

    def _limited(self, q: DNSQuestion, answer: Answer, udp: bool, turn: int) -> Answer:
        """Under --udp-answer-limit, a UDP answer with at most that many instances."""
        if not (udp and self.udp_limit and answer.answer and answer.authoritative):
            return answer
        qname = qname_key(q)
        nq = names.parse(qname, self.authority.zone)
        if nq is None or nq.kind not in _LIMITED_KINDS:
            return answer
        pick = partial(pick_for_udp, limit=self.udp_limit, turn=turn)
        return self.authority.lookup(qname, q.qtype, pick) or answer

    def _dnslib_made(self, q: Query, limit: int, udp: bool, turn: int) -> Made | None:
        """For the answer cache: the dnslib path's reply to a standard query, or None
        for forwarded names. Counts nothing itself."""
        if self.special and q.qtype in _REFUSED_TYPES:
            return None  # a transfer: operations.py's, every time
        try:
            msg = DNSRecord.parse(q.data)
            question = msg.questions[0]
            answer = self._lookup(question)
            if answer is _OUTSIDE and self.forwarding:
                return None
            answer = self._limited(question, answer, udp, turn)
            reply, truncated = self._pack(msg, answer, q.edns, limit, turn)
        except Exception:  # the dnslib path will meet it again, and log and count it
            return None
        # Lower-cased question: the cache spells it anew for each query.
        reply = reply[:HEADER] + q.lower_name + reply[q.name_end :]
        cycle = 1 if truncated else (len(answer.answer) if answer.rotate else answer.cycle)
        return Made(reply, _outcome(answer, truncated), cycle, -1, self._scope(question, answer))

    def _scope(self, q: DNSQuestion, answer: Answer) -> str:
        qname = qname_key(q)
        if any(r.rtype == QTYPE.CNAME for r in answer.answer):
            return EVERY  # a chase may end in any zone, the registry's included
        if self.authority.zone_of(qname) != self.authority.zone:
            return STATIC
        if any(r.rtype == QTYPE.SOA for r in (*answer.answer, *answer.authority)):
            return EVERY  # the serial moves with every change
        return scope_of(self.authority.zone, qname)

    def _lookup(self, q: DNSQuestion) -> Answer:
        if q.qclass not in (proto.CLASS_IN, proto.CLASS_ANY) or q.qtype in _REFUSED_TYPES:
            return refused()
        key = (qname_key(q), q.qtype)
        answer = self._cache.get(key)
        if answer is None:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
                self._cache_scopes.clear()
            found = self.authority.lookup(*key)
            answer = found or _OUTSIDE
            self._cache[key] = answer
            scope = self._scope(q, answer) if found is not None else STATIC
            self._cache_scopes.setdefault(scope, []).append(key)
        return answer

    def _turned(self, q: DNSQuestion, answer: Answer, udp: bool) -> tuple[Answer, int]:
        """The answer as this turn gives it (rotated, or limited), and the turn."""
        key = (qname_key(q), q.qtype)
        turn = self._turns.get(key, 0)
        answer = self._limited(q, answer, udp, turn)
        cycle = len(answer.answer) if answer.rotate else answer.cycle
        if cycle < 2:
            return answer, 0
        self._turns[key] = turn + 1
        return answer, turn % cycle

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
        # Put the client's spelling back (names compressed into the question then read
        # back in the client's case, which DNS compares without).
        spelled = name_wire(labels)
        return wire[:HEADER] + spelled + wire[HEADER + len(spelled) :], truncated

    def _error(self, msg: DNSRecord, rcode: int, echo: bool = False) -> bytes:
        questions = msg.questions[:1] if echo else []
        wire = bytes(DNSRecord(self._header(msg, rcode), questions=questions).pack())
        return wire

    def _badvers(self, msg: DNSRecord) -> bytes:
        opt = EDNS0(udp_len=self.max_udp, ext_rcode=BADVERS >> 4, version=EDNS_VERSION)
        reply = DNSRecord(self._header(msg, BADVERS & 0xF), questions=msg.questions, ar=[opt])
        wire = bytes(reply.pack())
        return wire

    def refuse(self, data: bytes, udp: bool) -> bytes | None:
        """REFUSED, to a client --dns-allow does not admit (its question echoed when it
        is a standard one); None, nothing sent, for garbage and responses."""
        if len(data) < HEADER or data[2] & proto.QR:
            self.counts.taken[udp][DROPPED_AT] += 1
            return None
        self.counts.taken[udp][REFUSED_AT] += 1
        self.counts.refusals.inc(DNS_ALLOW)
        q = classify(data)
        flags = bytes([proto.QR | data[2] & (proto.OPCODE_MASK | proto.RD), proto.REFUSED])
        if q is None:
            return data[:2] + flags + bytes(8)
        return data[:2] + flags + b"\x00\x01" + bytes(6) + data[HEADER : q.question_end]

    # -- forwarded answers

    def forwarded(self, forward: Forward, reply: bytes | None) -> bytes:
        """The upstream's reply for the client, or SERVFAIL when none came."""
        if reply is None:
            self.counts.forward_replies.inc("failed")
            return self._error(forward.request, RCODE.SERVFAIL, echo=True)
        # We offer recursion through the upstreams, whatever the upstream says of itself.
        reply = reply[:3] + bytes([reply[3] | proto.RA]) + reply[4:]
        if len(reply) <= forward.limit:
            self.counts.forward_replies.inc("answered")
            return reply
        self.counts.forward_replies.inc("truncated")
        header = self._header(forward.request, RCODE.NOERROR)
        header.tc = 1
        ar = [EDNS0(udp_len=self.max_udp)] if _edns(forward.request).present else []
        return bytes(DNSRecord(header, questions=forward.request.questions, ar=ar).pack())


def _is_update(wire: bytes) -> bool:
    return len(wire) >= HEADER and (wire[2] & proto.OPCODE_MASK) >> 3 == _UPDATE_OPCODE


def _is_special(msg: DNSRecord) -> bool:
    """A transfer question, or a TSIG record (always the last one, RFC 8945 5.1)."""
    if len(msg.questions) == 1 and msg.questions[0].qtype in _REFUSED_TYPES:
        return True
    return bool(msg.ar) and msg.ar[-1].rtype == QTYPE.TSIG


def _outcome(answer: Answer, truncated: bool) -> int:
    return outcome(answer.rcode, bool(answer.answer), truncated)


def _failed(rcode: int) -> int:
    """The outcome of an error answer (no records)."""
    return outcome(rcode, False, False)


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
