"""The miss path: registry answers encoded by hand from the view, no dnslib (pure).

``HandEncoder.encode`` answers a classified query (query.py) for the registry zone,
every row of the naming table and its negatives, straight from the ``Discovery`` into
bytes. The bytes are the dnslib path's to the last bit (same record order, same name
compression, same truncation; a test compares them on generated fleets), so the answer
cache may hold either. It declines (None) what is unusual here: names inside zone files,
forwarded names, labels that are not plain ASCII; the dnslib path answers those.

Each reply says what it depends on (``scope``): one service, the set of live services,
or nothing of the registry, so a change to service S drops only what S could change;
and where it carries the SOA serial, which the cache patches instead of dropping.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jarvis_dns.discovery import Discovery, idle_first, tags_of
from jarvis_dns.dns import names, proto
from jarvis_dns.dns.names import Kind, NameQuery
from jarvis_dns.dns.packer import Labels, Packer, name_wire
from jarvis_dns.dns.records import (
    RFC8482_CPU,
    SOA_EXPIRE,
    SOA_REFRESH,
    SOA_RETRY,
    address_of,
    pick_for_udp,
    srv_priority,
    srv_weight,
    txt_strings,
)
from jarvis_dns.dns.serial import SERIAL_MODULUS
from jarvis_dns.metrics.dns import outcome
from jarvis_dns.models import Instance, JSONObject

# What a cached answer depends on, besides one service (named by its type).
STATIC = ""  # nothing of the registry: zone files, refusals, names no row matches
MEMBERS = " members"  # which services have live instances (_services, _tcp)
EVERY = " every"  # anything: dropped on every change
AXFR, IXFR = 252, 251
_REFUSED_TYPES = frozenset({AXFR, IXFR})
_HINFO_ANY = bytes([len(RFC8482_CPU)]) + RFC8482_CPU + b"\x00"  # RFC 8482 4.2
_SRV_FIXED = struct.Struct("!HHH")
_COUNTS = struct.Struct("!HHHH")
_TIMES = struct.Struct("!IIII")

# owner, type, TTL, data. An owner of None is the question's name (every answer record
# of the registry zone): its data is then the whole record after the owner.
Rec = tuple[Labels | None, int, int, Any]
_RR = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
# Per-instance wire pieces kept; past this the memo starts over.
MAX_MEMO = 100_000


@dataclass(slots=True)
class Made:
    """One encoded reply and what the cache needs to know of it."""

    reply: bytes  # the whole reply, question lower-cased
    outcome: int  # what it counts as (metrics.dns.OUTCOMES)
    cycle: int = 1  # distinct answers by turn (rotation or limited picks); 1: fixed
    serial_at: int = -1  # offset of the SOA serial in ``reply``, when it carries one
    scope: str = STATIC


@dataclass(slots=True)
class _Shape:
    """An answer before encoding: its sections and how it varies."""

    rcode: int
    answer: list[Rec]
    authority: list[Rec]
    additional: list[Rec]
    scope: str
    aa: bool = True
    rotate: bool = False
    cycle: int = 1


def labels_of(name: str) -> Labels:
    return tuple(name.rstrip(".").encode().split(b".")) if name != "." else ()


@lru_cache(maxsize=65536)
def packed_address(host: str) -> tuple[int, bytes] | None:
    """(A or AAAA, address bytes) of an IP host, as records.address_of decides it."""
    found = address_of(host)
    return None if found is None else (int(found[0]), bytes(found[1].data))


class HandEncoder:
    def __init__(
        self,
        discovery: Discovery,
        zone: str,
        ttl: int,
        negative_ttl: int,
        ns_addresses: Callable[[], Sequence[str]],
        max_udp: int,
        forwarding: bool = False,
        udp_limit: int = 0,
    ) -> None:
        self.discovery = discovery
        self.zone = zone
        self.zone_labels = labels_of(zone)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.ns_addresses = ns_addresses
        self.max_udp = max_udp
        self.forwarding = forwarding
        self.udp_limit = udp_limit
        self.static_origins: tuple[str, ...] = ()  # zone files: their names are dnslib's
        self.transfers = False  # AXFR and IXFR: refused, or declined for operations.py
        self._ns = (names.NS_LABEL.encode(), *self.zone_labels)
        self._hostmaster = (b"hostmaster", *self.zone_labels)
        self._memo: dict[tuple[str, object, bool, int, int, str], tuple[Rec, Rec | None]] = {}
        # An instance's TXT record by (metadata object, busy, status): metadata is never
        # changed in place (a registration brings a new dict), and the entry holds the
        # dict, so its id cannot be reused while the entry lives.
        self._txt_memo: dict[tuple[int, bool, str], tuple[JSONObject, Rec]] = {}
        self._names: dict[bytes, _Name] = {}
        self._owned_addresses: dict[str, Rec | None] = {}
        self._soas: dict[tuple[bytes, int], tuple[bytes, int]] = {}

    # -- entry

    def encode(self, q: Any, limit: int, udp: bool, turn: int) -> Made | None:
        """The reply to a classified query (query.Query), or None to go the dnslib way."""
        name = self._names.get(q.lower_name)
        if name is None:
            name = self._name(q)
        where, nq, labels = name
        if where is _DECLINE:
            return None
        if q.qclass not in (proto.CLASS_IN, proto.CLASS_ANY) or q.qtype in _REFUSED_TYPES:
            if self.transfers and q.qtype in _REFUSED_TYPES:
                return None  # operations.py answers transfers
            return self._pack(q, labels, _refused(), limit, turn)
        if where is _OUTSIDE:
            return self._pack(q, labels, _refused(), limit, turn)
        if nq is None:
            return self._pack(q, labels, self._nxdomain(STATIC), limit, turn)
        shape = _KINDS[nq.kind](self, nq, q.qtype, udp, turn)
        return self._pack(q, labels, shape, limit, turn)

    def set_static_origins(self, origins: Sequence[str]) -> None:
        """The zone files' origins: their names are the dnslib path's."""
        self.static_origins = tuple(origins)
        self._names.clear()

    def _name(self, q: Any) -> _Name:
        """Where a question's name is (ours, outside, declined), its row, and the
        compression entries it makes at offset 12; remembered."""
        labels = q.labels()
        found: tuple[object, NameQuery | None] = (_DECLINE, None)
        try:
            text = (b".".join(labels).decode("ascii") + ".") if labels else "."
        except UnicodeDecodeError:
            text = ""
        if text and not any(b"." in label for label in labels):  # no dot inside a label
            inside = names.in_zone(text, self.zone)
            over = [len(o) for o in self.static_origins if names.in_zone(text, o)]
            if over and (not inside or max(over) >= len(self.zone)):
                pass  # a zone file's name, or the registry zone with its own file
            elif not inside:
                found = (_DECLINE if self.forwarding else _OUTSIDE, None)
            else:
                found = (_INSIDE, names.parse(text, self.zone))
        if len(self._names) >= MAX_MEMO:
            self._names.clear()
        self._names[q.lower_name] = name = (*found, _suffixes(tuple(labels)))
        return name

    # -- encoding

    def _pack(self, q: Any, labels: _Suffixes, shape: _Shape, limit: int, turn: int) -> Made:
        data = q.data
        flags = proto.QR | (proto.AA if shape.aa else 0) | (data[2] & proto.RD)
        low = (proto.RA if self.forwarding else 0) | shape.rcode
        p = Packer(data[:2] + bytes((flags, low)) + b"\x00\x01\x00\x00\x00\x00\x00\x00")
        p.buf += q.lower_name  # the question's name, and its suffixes to point at
        p.names.update(labels)
        # The question's name is at offset 12: records it owns point there (dnslib
        # compresses them so), the root excepted, which is one byte anyway.
        p.question = _QUESTION_POINTER if labels else b"\x00"
        p.buf += data[q.name_end : q.question_end]
        question_end = len(p.buf)
        answer = shape.answer
        if shape.rotate and len(answer) > 1:
            n = turn % len(answer)
            answer = answer[n:] + answer[:n]
        serial_at = -1
        buf, question = p.buf, p.question
        for rec in answer:
            if rec[0] is None and rec[1] in _RAW_TYPES:  # most records: bytes as kept
                buf += question
                buf += rec[3]
            else:
                serial_at = max(serial_at, _write(p, rec))
        if not answer and len(shape.authority) == 1 and not shape.additional:
            serial_at = self._negative_soa(p, q.lower_name, shape.authority[0])
        else:
            for rec in shape.authority:
                serial_at = max(serial_at, _write(p, rec))
        mark = len(p.buf)
        names = p.names
        for rec in shape.additional:
            if rec[1] != _GLUE:
                _write(p, rec)
                continue
            # Glue: dnslib's name compression, spelled out over the kept suffixes.
            glue = rec[3]
            for suffix, label in zip(glue.suffixes, glue.labels, strict=True):
                at = names.get(suffix)
                if at is not None:
                    buf += _POINTERS[at] if at < _POINTER_TABLE else _pointer(at)
                    break
                names[suffix] = len(buf)
                buf += label
            else:
                buf.append(0)
            buf += glue.rest
        opt = _opt(self.max_udp) if q.edns else b""
        n_an, n_ns, n_ar = len(answer), len(shape.authority), len(shape.additional)
        truncated = False
        if len(p.buf) + len(opt) > limit:
            del p.buf[mark:]
            n_ar = 0  # RFC 2181 9: dropping additional data needs no TC bit
            if len(p.buf) + len(opt) > limit:
                del p.buf[question_end:]
                n_an = n_ns = 0
                serial_at = -1
                truncated = True
                p.buf[2] |= proto.TC
        p.buf += opt
        p.buf[4:12] = _COUNTS.pack(1, n_an, n_ns, n_ar + (1 if opt else 0))
        return Made(
            bytes(p.buf),
            outcome(shape.rcode, bool(shape.answer), truncated),
            shape.cycle if not truncated else 1,
            serial_at,
            shape.scope,
        )

    def _negative_soa(self, p: Packer, name: bytes, rec: Rec) -> int:
        """A negative answer's SOA, right after the question: its bytes depend only on the
        question's name (what its names compress against), the TTL and the serial, so
        they are kept per (name, TTL) and only the serial is written anew. Returns the
        serial's offset."""
        start = len(p.buf)
        kept = self._soas.get((name, rec[2]))
        if kept is None:
            serial_at = _write(p, rec)
            if len(self._soas) >= MAX_MEMO:
                self._soas.clear()
            self._soas[(name, rec[2])] = (bytes(p.buf[start:]), serial_at - start)
            return serial_at
        data, at = kept
        p.buf += data
        serial_at = start + at
        p.buf[serial_at : serial_at + 4] = rec[3][2][:4]  # the times start with the serial
        return serial_at

    # -- shapes shared by the rows

    def _soa(self, ttl: int) -> Rec:
        serial = self.discovery.index % SERIAL_MODULUS
        times = _TIMES.pack(serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE) + struct.pack(
            "!I", self.negative_ttl
        )
        return (self.zone_labels, proto.SOA, ttl, (self._ns, self._hostmaster, times))

    def _negative(self) -> list[Rec]:
        # RFC 2308 section 3: the SOA's TTL in a negative answer is min(TTL, MINIMUM).
        return [self._soa(min(self.ttl, self.negative_ttl))]

    def _nxdomain(self, scope: str) -> _Shape:
        return _Shape(proto.NXDOMAIN, [], self._negative(), [], scope)

    def _nodata(self, scope: str) -> _Shape:
        return _Shape(proto.NOERROR, [], self._negative(), [], scope)

    def _any(self, scope: str) -> _Shape:
        return _Shape(proto.NOERROR, [self._own(proto.HINFO, _HINFO_ANY)], [], [], scope)

    def _own(self, rtype: int, rdata: bytes) -> Rec:
        """A record owned by the question's name."""
        return (None, rtype, 0, _RR.pack(rtype, proto.CLASS_IN, self.ttl, len(rdata)) + rdata)

    def _picked(
        self, instances: list[Instance], udp: bool, turn: int
    ) -> tuple[list[Instance], int]:
        """The instances a UDP answer carries under --udp-answer-limit, and its cycle."""
        return pick_for_udp(instances, self.udp_limit if udp else 0, turn)

    def _srv(self, instances: list[Instance]) -> tuple[list[Rec], list[Rec]]:
        memo = self._memo
        records: list[Rec] = []
        glue: list[Rec] = []
        for inst in instances:
            key = (
                inst.service_type,
                inst.instance_id,
                inst.busy,
                inst.weight,
                inst.port,
                inst.host,
            )
            pieces = memo.get(key)
            if pieces is None:
                pieces = self._srv_pieces(inst)
                if len(memo) >= MAX_MEMO:
                    memo.clear()
                memo[key] = pieces
            records.append(pieces[0])
            if pieces[1] is not None:
                glue.append(pieces[1])
        return records, glue

    def _srv_pieces(self, inst: Instance) -> tuple[Rec, Rec | None]:
        """An instance's SRV record (owned by the question) and its glue."""
        target = (inst.key.encode(), inst.service_type.encode(), *self.zone_labels)
        fixed = _SRV_FIXED.pack(srv_priority(inst), srv_weight(inst), inst.port)
        srv = self._own(proto.SRV, fixed + name_wire(target))
        address = packed_address(inst.host)
        glue: Rec | None = None
        if address is not None:
            rdata = address[1]
            rest = _RR.pack(address[0], proto.CLASS_IN, self.ttl, len(rdata)) + rdata
            glue = (target, _GLUE, 0, _Glue(target, rest))
        return srv, glue

    def _ptr(self, instances: list[Instance]) -> list[Rec]:
        owner = None  # the question's name
        zone, ttl = self.zone_labels, self.ttl
        return [
            (
                owner,
                proto.PTR,
                ttl,
                (i.key.encode(), b"_" + i.service_type.encode(), b"_tcp", *zone),
            )
            for i in instances
        ]

    def _txt(self, inst: Instance) -> Rec:
        memo = self._txt_memo
        key = (id(inst.metadata), inst.busy, inst.status.value)
        kept = memo.get(key)
        if kept is not None and kept[0] is inst.metadata:
            return kept[1]
        rec = self._own(proto.TXT, b"".join(bytes([len(s)]) + s for s in txt_strings(inst)))
        if len(memo) >= MAX_MEMO:
            memo.clear()
        memo[key] = (inst.metadata, rec)
        return rec

    def _addresses(self, owner: Labels | None, hosts: list[str], qtype: int) -> list[Rec]:
        """The A or AAAA records of these hosts (owner None: the question's name)."""
        if owner is None:
            owned = self._owned_addresses
            found = [owned[h] if h in owned else self._own_address(h) for h in hosts]
            return [rec for rec in found if rec is not None and rec[1] == qtype]
        ttl, records = self.ttl, list[Rec]()
        for host in hosts:
            address = packed_address(host)
            if address is not None and address[0] == qtype:
                records.append((owner, qtype, ttl, address[1]))
        return records

    def _own_address(self, host: str) -> Rec | None:
        """A host's A or AAAA record owned by the question (None for a host name); kept."""
        address = packed_address(host)
        rec = None if address is None else self._own(address[0], address[1])
        if len(self._owned_addresses) >= MAX_MEMO:
            self._owned_addresses.clear()
        self._owned_addresses[host] = rec
        return rec

    # -- the rows of the naming table

    def _apex(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = names.NS_LABEL  # the NS glue follows a service called "ns"
        if qtype == proto.SOA:
            return _Shape(proto.NOERROR, [self._soa(self.ttl)], [], [], scope)
        if qtype == proto.NS:
            glue = self._ns_glue()
            ns = (self.zone_labels, proto.NS, self.ttl, self._ns)
            return _Shape(proto.NOERROR, [ns], [], glue, scope)
        return self._any(scope) if qtype == proto.ANY else self._nodata(scope)

    def _ns_hosts(self) -> tuple[list[str], bool]:
        """The name server's hosts, and whether they rotate (a service called "ns")."""
        live = self.discovery.live(names.NS_LABEL)
        if live:  # a service called "ns": the registry wins
            return [i.host for i in idle_first(live)], True
        return list(self.ns_addresses()), False

    def _ns_glue(self) -> list[Rec]:
        hosts, _ = self._ns_hosts()
        glue: list[Rec] = []
        for qtype in (proto.A, proto.AAAA):
            glue.extend(self._addresses(self._ns, hosts, qtype))
        return glue

    def _ns_host(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        hosts, rotate = self._ns_hosts()
        return self._address_shape(hosts, qtype, names.NS_LABEL, rotate)

    def _address_shape(
        self, hosts: list[str], qtype: int, scope: str, rotate: bool, cycle: int = 1
    ) -> _Shape:
        if qtype == proto.ANY:
            return self._any(scope)
        if qtype not in (proto.A, proto.AAAA):
            return self._nodata(scope)
        records = self._addresses(None, hosts, qtype)
        if not records:
            return self._nodata(scope)
        turning = rotate and len(records) > 1 and cycle == 1
        shape = _Shape(proto.NOERROR, records, [], [], scope, rotate=turning)
        shape.cycle = len(records) if turning else cycle
        return shape

    def _service(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = nq.service
        live = self.discovery.live(nq.service)
        if not live:
            return self._nxdomain(scope)
        return self._srv_ptr(live, qtype, udp, turn, scope)

    def _srv_ptr(
        self,
        instances: list[Instance],
        qtype: int,
        udp: bool,
        turn: int,
        scope: str,
    ) -> _Shape:
        if qtype == proto.SRV:
            picked, cycle = self._picked(instances, udp, turn)
            records, glue = self._srv(picked)
            return _Shape(proto.NOERROR, records, [], glue, scope, cycle=cycle)
        if qtype == proto.PTR:
            picked, cycle = self._picked(instances, udp, turn)
            return _Shape(proto.NOERROR, self._ptr(picked), [], [], scope, cycle=cycle)
        return self._any(scope) if qtype == proto.ANY else self._nodata(scope)

    def _service_instance(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = nq.service
        inst = self.discovery.live_instance(nq.service, nq.instance)
        if inst is None:
            return self._nxdomain(scope)
        if qtype == proto.SRV:
            records, glue = self._srv([inst])
            return _Shape(proto.NOERROR, records, [], glue, scope)
        if qtype == proto.TXT:
            return _Shape(proto.NOERROR, [self._txt(inst)], [], [], scope)
        return self._any(scope) if qtype == proto.ANY else self._nodata(scope)

    def _host(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = nq.service
        live = self.discovery.live(nq.service)
        if not live:
            return self._nxdomain(scope)
        chosen = idle_first(live)
        picked, cycle = self._picked(chosen, udp, turn)
        hosts = [i.host for i in picked]
        return self._address_shape(hosts, qtype, scope, cycle == 1, cycle)

    def _instance_host(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = nq.service
        inst = self.discovery.live_instance(nq.service, nq.instance)
        if inst is None:
            return self._nxdomain(scope)
        if qtype == proto.TXT:
            return _Shape(proto.NOERROR, [self._txt(inst)], [], [], scope)
        return self._address_shape([inst.host], qtype, scope, False)

    def _subtype(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = nq.service
        tagged = self.discovery.tagged(nq.service, nq.tag)
        if not tagged:
            return self._nxdomain(scope)
        return self._srv_ptr(tagged, qtype, udp, turn, scope)

    def _sub(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        scope = nq.service
        if not any(tags_of(i) for i in self.discovery.live(nq.service)):
            return self._nxdomain(scope)
        return self._any(scope) if qtype == proto.ANY else self._nodata(scope)

    def _services(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        if qtype == proto.PTR:
            zone, ttl = self.zone_labels, self.ttl
            ptrs: list[Rec] = [
                (None, proto.PTR, ttl, (b"_" + svc.encode(), b"_tcp", *zone))
                for svc in self.discovery.live_services()
            ]
            if ptrs:
                return _Shape(proto.NOERROR, ptrs, [], [], MEMBERS)
        return self._any(MEMBERS) if qtype == proto.ANY else self._nodata(MEMBERS)

    def _tcp(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        if not self.discovery.live_services():
            return self._nxdomain(MEMBERS)
        return self._any(MEMBERS) if qtype == proto.ANY else self._nodata(MEMBERS)

    def _udp(self, nq: NameQuery, qtype: int, udp: bool, turn: int) -> _Shape:
        return self._any(STATIC) if qtype == proto.ANY else self._nodata(STATIC)


_QUESTION_POINTER = (proto.POINTER | proto.HEADER).to_bytes(2, "big")
_GLUE = 0  # a record type standing for "glue: data is a _Glue"
_POINTER_TABLE = 4096  # pointers to offsets below this come from a table


def _pointer(at: int) -> bytes:
    return (proto.POINTER | (at & proto.POINTER_SPAN)).to_bytes(2, "big")


_POINTERS = [_pointer(at) for at in range(_POINTER_TABLE)]


class _Glue:
    """A glue record's owner as dnslib walks it (suffixes, labels) and the rest of it."""

    __slots__ = ("labels", "rest", "suffixes")

    def __init__(self, owner: Labels, rest: bytes) -> None:
        self.suffixes = [owner[i:] for i in range(len(owner))]
        self.labels = [bytes([len(label)]) + label for label in owner]
        self.rest = rest


_RAW_TYPES = frozenset({proto.A, proto.AAAA, proto.TXT, proto.SRV, proto.HINFO})
_Suffixes = dict[Labels, int]  # a question name's compression entries
_Name = tuple[object, NameQuery | None, _Suffixes]


def _suffixes(labels: Labels) -> _Suffixes:
    """Where each suffix of the question's name starts, as dnslib records them."""
    out, at = {}, proto.HEADER
    for i, label in enumerate(labels):
        out[labels[i:]] = at
        at += len(label) + 1
    return out


# Where a question's name is: the registry zone's, outside every zone, or for dnslib.
_INSIDE, _OUTSIDE, _DECLINE = object(), object(), object()


def _refused() -> _Shape:
    return _Shape(proto.REFUSED, [], [], [], STATIC, aa=False)


def _write(p: Packer, rec: Rec) -> int:
    """Write one record; the offset of its SOA serial, or -1."""
    owner, rtype, ttl, data = rec
    if rtype == proto.PTR or rtype == proto.NS:
        start = p.open(owner, rtype, ttl)
        p.name(data)
        p.close(start)
        return -1
    if rtype == proto.SOA:
        start = p.open(owner, rtype, ttl)
        mname, rname, times = data
        p.name(mname)
        p.name(rname)
        serial_at = len(p.buf)
        p.buf += times
        p.close(start)
        return serial_at
    if owner is None:
        p.buf += p.question
        p.buf += data
    else:
        p.record(owner, rtype, ttl, data)
    return -1


def _opt(max_udp: int) -> bytes:
    """RFC 6891 6.1.2: our OPT record, root owner, no options."""
    return b"\x00" + struct.pack("!HHIH", proto.OPT, max_udp, 0, 0)


_KINDS: dict[Kind, Callable[[HandEncoder, NameQuery, int, bool, int], _Shape]] = {
    Kind.APEX: HandEncoder._apex,
    Kind.NS_HOST: HandEncoder._ns_host,
    Kind.SERVICE: HandEncoder._service,
    Kind.SERVICE_INSTANCE: HandEncoder._service_instance,
    Kind.HOST: HandEncoder._host,
    Kind.INSTANCE_HOST: HandEncoder._instance_host,
    Kind.SUBTYPE: HandEncoder._subtype,
    Kind.SUB: HandEncoder._sub,
    Kind.SERVICES: HandEncoder._services,
    Kind.TCP: HandEncoder._tcp,
    Kind.UDP: HandEncoder._udp,
}
