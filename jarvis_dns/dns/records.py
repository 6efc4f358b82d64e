"""The registry view -> DNS RRsets, and the answer shapes every zone shares (pure).

A name is a ``Node``: its RRsets by type. A ``Node`` of ``None`` means the name does not
exist (NXDOMAIN); an empty ``Node`` is a name that exists with no data of its own (an
empty non-terminal, RFC 8020). ``answer_for`` turns a node and a query type into an
``Answer`` that depends only on (name, type), so callers may cache it until the next
registry or zone change; only the message ID, the question's case and the A/AAAA
rotation differ per response, and those are applied when the message is packed.

Owner names here are lower case; the responder puts the question's case back.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, NS, PTR, QTYPE, RCODE, RD, RR, SOA, SRV, TXT, A, DNSLabel

from jarvis_dns.discovery import Discovery, idle_first, tags_of
from jarvis_dns.dns import names
from jarvis_dns.dns.names import Kind, NameQuery
from jarvis_dns.dns.serial import SERIAL_MODULUS
from jarvis_dns.models import Instance

# RFC 2782: clients use the lowest priority first, so busy instances are only
# picked when every idle one is gone.
PRIORITY_IDLE = 0
PRIORITY_BUSY = 10
# Load balancers that read only the SRV weight (HAProxy) would still send a busy
# instance its full share; a weight of 1 makes it the last choice there too.
BUSY_WEIGHT = 1
# --udp-answer-limit: the picks of a service's instances differ per answer; this many
# distinct picks per question are encoded, then they repeat.
LIMITED_CYCLE = 8
# RFC 6763 section 6.1: one TXT string is a length byte and at most 255 bytes.
MAX_TXT_STRING = 255
# SOA timers matter only to secondaries doing zone transfers (--transfer-allow): short,
# since the zone changes often; NOTIFY (--notify) tells them sooner still.
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 60, 30, 86400
# RFC 8482 section 4.2: the minimal answer to ANY is one synthesised HINFO.
RFC8482_CPU = b"RFC8482"

RRs = tuple[RR, ...]


class HINFO(RD):  # type: ignore[misc]
    """HINFO rdata (RFC 1035 3.3.2); dnslib does not ship one."""

    def __init__(self, cpu: bytes, os: bytes) -> None:
        self.cpu, self.os = cpu, os

    def pack(self, buffer: Any) -> None:
        for text in (self.cpu, self.os):
            buffer.pack("!B", len(text))
            buffer.append(text)

    def __repr__(self) -> str:
        return f'"{self.cpu.decode()}" "{self.os.decode()}"'


@dataclass(frozen=True, slots=True)
class RRset:
    records: RRs
    additional: RRs = ()
    rotate: bool = False  # A/AAAA of a service name: order rotated per response
    cycle: int = 1  # distinct picks by turn under --udp-answer-limit; 1: none


Node = dict[int, RRset]


@dataclass(frozen=True, slots=True)
class Answer:
    """Everything of a response that depends only on (name, type)."""

    rcode: int
    answer: RRs = ()
    authority: RRs = ()
    additional: RRs = ()
    authoritative: bool = True
    rotate: bool = False
    cycle: int = 1


def label(name: str) -> DNSLabel:
    # From bytes: dnslib would otherwise run every str through the IDNA codec.
    return DNSLabel(name.encode())


def rr(name: str, rtype: int, ttl: int, rdata: Any) -> RR:
    return RR(label(name), rtype, 1, ttl, rdata)


# -- answers -------------------------------------------------------------------


def negative_soa(soa: RR) -> RR:
    """RFC 2308 section 3: the SOA's TTL in a negative answer is min(TTL, MINIMUM)."""
    return RR(soa.rname, QTYPE.SOA, 1, min(soa.ttl, soa.rdata.times[4]), soa.rdata)


def nxdomain(soa: RR) -> Answer:
    return Answer(RCODE.NXDOMAIN, authority=(negative_soa(soa),))


def nodata(soa: RR) -> Answer:
    return Answer(RCODE.NOERROR, authority=(negative_soa(soa),))


def refused() -> Answer:
    return Answer(RCODE.REFUSED, authoritative=False)


def minimal_any(qname: str, ttl: int) -> Answer:
    """RFC 8482: answer ANY with one HINFO instead of everything the name has."""
    return Answer(RCODE.NOERROR, answer=(rr(qname, QTYPE.HINFO, ttl, HINFO(RFC8482_CPU, b"")),))


def answer_for(node: Node, qname: str, qtype: int, soa: RR, ttl: int) -> Answer:
    """The answer for an existing name: its RRset, the ANY minimum, or NODATA."""
    if qtype == QTYPE.ANY:
        return minimal_any(qname, ttl)
    rrset = node.get(qtype)
    if rrset is None or not rrset.records:
        return nodata(soa)
    return Answer(
        RCODE.NOERROR,
        answer=rrset.records,
        additional=rrset.additional,
        rotate=rrset.rotate,
        cycle=rrset.cycle,
    )


# -- instance data ---------------------------------------------------------------


def srv_priority(inst: Instance) -> int:
    return PRIORITY_BUSY if inst.busy else PRIORITY_IDLE


def srv_weight(inst: Instance) -> int:
    return min(inst.weight, BUSY_WEIGHT) if inst.busy else inst.weight


def limited(instances: list[Instance], limit: int, turn: int) -> list[Instance]:
    """At most ``limit`` instances, idle ones first, in an order shuffled per turn.

    For clients that never retry over TCP (HAProxy): a fitting UDP answer, and over
    the turns every instance gets its share. Seeded by the turn, so both paths agree.
    """
    rng = random.Random(turn % LIMITED_CYCLE)
    idle = [i for i in instances if not i.busy]
    busy = [i for i in instances if i.busy]
    rng.shuffle(idle)
    rng.shuffle(busy)
    return (idle + busy)[:limit]


Pick = Callable[[list[Instance]], tuple[list[Instance], int]]


def pick_for_udp(instances: list[Instance], limit: int, turn: int) -> tuple[list[Instance], int]:
    """The instances an answer carries (all, or ``limited``) and how many picks cycle."""
    if 0 < limit < len(instances):
        return limited(instances, limit, turn), LIMITED_CYCLE
    return instances, 1


def _all(instances: list[Instance]) -> tuple[list[Instance], int]:
    return instances, 1


def address_of(host: str) -> tuple[int, Any] | None:
    """(QTYPE.A or QTYPE.AAAA, rdata) for an IP host; None for a host name.

    Host names are not resolved: answering with a CNAME or chasing names outside the
    zone would make the registry depend on other DNS servers, so they get no glue.
    """
    if host.lower() == "localhost":
        return QTYPE.A, A("127.0.0.1")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return QTYPE.A, A(str(ip))
    return QTYPE.AAAA, AAAA(ip.exploded)


def _txt_value(value: Any) -> str:
    # RFC 6763 leaves value encoding to the service; lists and objects become JSON.
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _txt_key_ok(key: str) -> bool:
    # RFC 6763 section 6.4: printable US-ASCII, no '='.
    return bool(key) and all(" " <= c <= "~" for c in key) and "=" not in key


def txt_strings(inst: Instance) -> list[bytes]:
    """RFC 6763 key=value strings: metadata, then busy= and status=.

    A pair longer than one TXT string (255 bytes) is left out rather than cut, since a
    cut JSON value would mislead; HTTP carries the full metadata. Keys are
    case-insensitive there, so only the first of a key is kept.
    """
    seen = {"busy", "status"}
    out: list[bytes] = []
    for key, value in inst.metadata.items():
        if not _txt_key_ok(key) or key.lower() in seen:
            continue
        seen.add(key.lower())
        pair = f"{key}={_txt_value(value)}".encode()
        if len(pair) <= MAX_TXT_STRING:
            out.append(pair)
    out.append(b"busy=" + (b"true" if inst.busy else b"false"))
    out.append(b"status=" + inst.status.value.encode())
    return out


# -- the registry zone --------------------------------------------------------------


@dataclass(slots=True)
class RegistryRecords:
    """Builds the nodes of the registry zone from the registry view."""

    discovery: Discovery
    zone: str
    ttl: int = 5
    negative_ttl: int = 5
    ns_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])

    def live(self, svc: str) -> list[Instance]:
        return self.discovery.live(svc)

    def live_instance(self, svc: str, iid: str) -> Instance | None:
        return self.discovery.live_instance(svc, iid)

    def soa(self) -> RR:
        times = (
            self.discovery.index % SERIAL_MODULUS,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.negative_ttl,
        )
        rdata = SOA(label(names.ns_name(self.zone)), label(names.hostmaster_name(self.zone)), times)
        return rr(self.zone, QTYPE.SOA, self.ttl, rdata)

    def node(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        """The registry's node for a classified name; None when it has none.

        ``pick`` chooses the instances of a service's SRV, PTR and A/AAAA answers (the
        UDP answer limit); by default all of them."""
        return _BUILDERS[q.kind](self, q, pick)

    # -- per row of the naming table

    def _apex(self, q: NameQuery, pick: Pick = _all) -> Node:
        ns = names.ns_name(self.zone)
        return {
            QTYPE.SOA: RRset((self.soa(),)),
            QTYPE.NS: RRset((rr(self.zone, QTYPE.NS, self.ttl, NS(label(ns))),), self._ns_glue()),
        }

    def _ns_glue(self) -> RRs:
        node = self._ns_host(NameQuery(Kind.NS_HOST), _all)
        return tuple(r for rrset in (node or {}).values() for r in rrset.records)

    def _ns_host(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        if self.live(names.NS_LABEL):  # a service called "ns": the registry wins
            return self._host(NameQuery(Kind.HOST, service=names.NS_LABEL), _all)
        ns = names.ns_name(self.zone)
        found = (address_of(a) for a in self.ns_addresses)
        return _address_node(ns, [f for f in found if f], self.ttl, rotate=False)

    def _service(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        live = self.live(q.service)
        if not live:
            return None
        owner = names.service_name(q.service, self.zone)
        return self._srv_ptr(owner, live, pick)

    def _srv_ptr(self, owner: str, instances: list[Instance], pick: Pick) -> Node:
        picked, cycle = pick(instances)
        return {
            QTYPE.SRV: self._srv(owner, picked, cycle),
            QTYPE.PTR: self._ptr(owner, picked, cycle),
        }

    def _srv(self, owner: str, instances: Iterable[Instance], cycle: int = 1) -> RRset:
        records, glue = [], []
        for inst in instances:
            target = names.target_name(inst.key, inst.service_type, self.zone)
            srv = SRV(srv_priority(inst), srv_weight(inst), inst.port, label(target))
            records.append(rr(owner, QTYPE.SRV, self.ttl, srv))
            address = address_of(inst.host)
            if address is not None:
                glue.append(rr(target, address[0], self.ttl, address[1]))
        return RRset(tuple(records), tuple(glue), cycle=cycle)

    def _ptr(self, owner: str, instances: Iterable[Instance], cycle: int = 1) -> RRset:
        return RRset(
            tuple(
                rr(
                    owner,
                    QTYPE.PTR,
                    self.ttl,
                    PTR(label(names.service_instance_name(i.key, i.service_type, self.zone))),
                )
                for i in instances
            ),
            cycle=cycle,
        )

    def _service_instance(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        inst = self.live_instance(q.service, q.instance)
        if inst is None:
            return None
        owner = names.service_instance_name(inst.key, q.service, self.zone)
        return {QTYPE.SRV: self._srv(owner, [inst]), QTYPE.TXT: self._txt(owner, inst)}

    def _txt(self, owner: str, inst: Instance) -> RRset:
        return RRset((rr(owner, QTYPE.TXT, self.ttl, TXT(txt_strings(inst))),))

    def _host(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        live = self.live(q.service)
        if not live:
            return None
        picked, cycle = pick(idle_first(live))
        found = (address_of(i.host) for i in picked)
        owner = names.host_name(q.service, self.zone)
        return _address_node(owner, [f for f in found if f], self.ttl, True, cycle)

    def _instance_host(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        inst = self.live_instance(q.service, q.instance)
        if inst is None:
            return None
        owner = names.target_name(inst.key, q.service, self.zone)
        address = address_of(inst.host)
        node = _address_node(owner, [address] if address else [], self.ttl, rotate=False)
        node[QTYPE.TXT] = self._txt(owner, inst)
        return node

    def _subtype(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        tagged = self.discovery.tagged(q.service, q.tag)
        if not tagged:
            return None
        owner = names.subtype_name(q.tag, q.service, self.zone)
        return self._srv_ptr(owner, tagged, pick)

    def _sub(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        return {} if any(tags_of(i) for i in self.live(q.service)) else None

    def _services(self, q: NameQuery, pick: Pick = _all) -> Node:
        owner = names.services_name(self.zone)
        ptrs = tuple(
            rr(owner, QTYPE.PTR, self.ttl, PTR(label(names.service_name(svc, self.zone))))
            for svc in self.discovery.live_services()
        )
        return {QTYPE.PTR: RRset(ptrs)}

    def _tcp(self, q: NameQuery, pick: Pick = _all) -> Node | None:
        return {} if self.discovery.live_services() else None

    def _udp(self, q: NameQuery, pick: Pick = _all) -> Node:
        return {}  # above _services._dns-sd._udp, which always exists


def _address_node(
    owner: str, addresses: list[tuple[int, Any]], ttl: int, rotate: bool, cycle: int = 1
) -> Node:
    node: Node = {}
    for rtype in (QTYPE.A, QTYPE.AAAA):
        records = tuple(rr(owner, t, ttl, rd) for t, rd in addresses if t == rtype)
        if records:
            turning = rotate and len(records) > 1 and cycle == 1
            node[rtype] = RRset(records, rotate=turning, cycle=cycle)
    return node


_BUILDERS = {
    Kind.APEX: RegistryRecords._apex,
    Kind.NS_HOST: RegistryRecords._ns_host,
    Kind.SERVICE: RegistryRecords._service,
    Kind.SERVICE_INSTANCE: RegistryRecords._service_instance,
    Kind.HOST: RegistryRecords._host,
    Kind.INSTANCE_HOST: RegistryRecords._instance_host,
    Kind.SUBTYPE: RegistryRecords._subtype,
    Kind.SUB: RegistryRecords._sub,
    Kind.SERVICES: RegistryRecords._services,
    Kind.TCP: RegistryRecords._tcp,
    Kind.UDP: RegistryRecords._udp,
}
