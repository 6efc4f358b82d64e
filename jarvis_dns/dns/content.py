"""The zones as whole lists of records, for zone transfers (pure).

Queries are answered name by name (records.py, encode.py); a transfer carries a whole
zone (AXFR) or what changed in it (IXFR, journal.py). The registry zone is listed here
from the same pieces the answers are made of (``records.srv_priority``, ``txt_strings``,
``packed_address``, ``names``), so a secondary answers what jarvis-dns answers:

* per live instance: its SRV and PTR at ``_<svc>._tcp.Z``, its SRV and TXT at
  ``<id>._<svc>._tcp.Z``, its address and TXT at ``<id>.<svc>.Z``, and SRV and PTR at
  ``_<tag>._sub._<svc>._tcp.Z`` for each tag;
* per service with a live instance: the addresses at ``<svc>.Z`` (the idle instances',
  all when none is idle) and its PTR at ``_services._dns-sd._udp.Z``;
* the apex as authority.py merges it: SOA, NS and what the zone's own file sets there;
* fallbacks, shown only while the registry has no node of their name (registry names
  take precedence): the names of the registry zone's own file, and ``ns.Z``'s
  listening addresses, which a service called ``ns`` replaces.

A record is (owner labels, type, TTL, rdata), the rdata as uncompressed wire: records
compare and hash as DNS compares resource records, and a set of them is an RRset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from dnslib import QTYPE, RR, DNSBuffer, DNSLabel

from jarvis_dns.discovery import idle_first, tags_of
from jarvis_dns.dns import names, proto
from jarvis_dns.dns.authority import Authority
from jarvis_dns.dns.encode import labels_of, packed_address
from jarvis_dns.dns.names import NameQuery
from jarvis_dns.dns.packer import Labels, name_wire
from jarvis_dns.dns.records import srv_priority, srv_weight, txt_strings
from jarvis_dns.dns.zones import StaticZone
from jarvis_dns.models import Instance

Record = tuple[Labels, int, int, bytes]
Address = tuple[int, bytes]  # (A or AAAA, the address's bytes)
_SRV_FIXED = struct.Struct("!HHH")
# A tag becomes the label _<tag>: one byte for '_', 63 in all (RFC 1035 2.3.4).
MAX_TAG = 62


class _Uncompressed(DNSBuffer):  # type: ignore[misc]
    """dnslib's buffer writing names whole: rdata that stands alone in a record list."""

    def encode_name(self, name: DNSLabel) -> None:
        self.encode_name_nocompress(name)


def from_dnslib(rr: RR) -> Record:
    """A dnslib record (zone files, the merged apex) as a transfer record."""
    buffer = _Uncompressed()
    rr.rdata.pack(buffer)
    owner = tuple(label.lower() for label in rr.rname.label)
    return (owner, int(rr.rtype), int(rr.ttl), bytes(buffer.data))


def txt_rdata(inst: Instance) -> bytes:
    return b"".join(bytes([len(s)]) + s for s in txt_strings(inst))


def tag_label(tag: str) -> bytes | None:
    """The ``_<tag>`` label a query can ask for; None for tags no name can carry (a dot,
    non-ASCII, too long), which are left out of transfers as queries cannot reach them."""
    if not tag or len(tag) > MAX_TAG or "." in tag or not tag.isascii():
        return None
    return b"_" + tag.encode()


@dataclass(frozen=True, slots=True)
class Fallback:
    """Records shown at ``owner`` only while the registry has no node there."""

    owner: Labels
    query: NameQuery | None  # the owner's row of the naming table; None: no row
    records: tuple[Record, ...]

    @property
    def service(self) -> str:
        return self.query.service if self.query is not None else ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry zone at one change index, taken at once so a transfer that takes
    seconds still sends one version of the zone (instances are replaced on change,
    never altered in what DNS shows, so holding them is holding that version)."""

    index: int
    soa: Record
    apex: tuple[Record, ...]
    services: dict[str, list[Instance]]
    fallbacks: tuple[Fallback, ...]


class ZoneContent:
    """The registry zone's records, from the same view and zone file as the answers."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.records = authority.records
        self.discovery = authority.records.discovery
        self.zone = labels_of(authority.zone)
        self._zone_wire = name_wire(self.zone)
        self._services_owner = labels_of(names.services_name(authority.zone))

    @property
    def ttl(self) -> int:
        return self.records.ttl

    # -- one instance, one service

    def instance(self, inst: Instance) -> list[Record]:
        """An instance's own records; none unless it is live."""
        if not inst.live:
            return []
        ttl, zone, zone_wire = self.ttl, self.zone, self._zone_wire
        svc, iid = inst.service_type.encode(), inst.key.encode()
        service = (b"_" + svc, b"_tcp", *zone)
        resolve = (iid, *service)
        target = (iid, svc, *zone)
        # Names in rdata by concatenation: a transfer writes 100,000s of them.
        own = bytes((len(iid),)) + iid
        ptr = own + bytes((len(svc) + 1,)) + b"_" + svc + b"\x04_tcp" + zone_wire
        fixed = _SRV_FIXED.pack(srv_priority(inst), srv_weight(inst), inst.port)
        srv = fixed + own + bytes((len(svc),)) + svc + zone_wire
        txt = txt_rdata(inst)
        found: list[Record] = [
            (service, proto.SRV, ttl, srv),
            (service, proto.PTR, ttl, ptr),
            (resolve, proto.SRV, ttl, srv),
            (resolve, proto.TXT, ttl, txt),
            (target, proto.TXT, ttl, txt),
        ]
        address = packed_address(inst.host)
        if address is not None:
            found.append((target, address[0], ttl, address[1]))
        for tag in sorted(tags_of(inst)) if inst.metadata else ():
            label = tag_label(tag)
            if label is not None:
                sub = (label, b"_sub", *service)
                found += [(sub, proto.SRV, ttl, srv), (sub, proto.PTR, ttl, ptr)]
        return found

    def host_owner(self, svc: str) -> Labels:
        return (svc.encode(), *self.zone)

    def address_record(self, svc: str, address: Address) -> Record:
        return (self.host_owner(svc), address[0], self.ttl, address[1])

    def services_record(self, svc: str) -> Record:
        """The service's PTR at ``_services._dns-sd._udp.Z``."""
        target = name_wire((b"_" + svc.encode(), b"_tcp", *self.zone))
        return (self._services_owner, proto.PTR, self.ttl, target)

    def service(self, svc: str, live: list[Instance]) -> list[Record]:
        """A service's records beyond its instances' own (none without a live one)."""
        if not live:
            return []
        shown = dict.fromkeys(
            a for a in (packed_address(i.host) for i in idle_first(live)) if a is not None
        )
        return [*(self.address_record(svc, a) for a in shown), self.services_record(svc)]

    # -- the apex and the fallbacks

    def soa(self) -> Record:
        node = self.authority.rrsets(self.authority.zone) or {}
        return from_dnslib(node[QTYPE.SOA].records[0])

    def apex(self) -> list[Record]:
        """The apex's records but the SOA."""
        node = self.authority.rrsets(self.authority.zone) or {}
        return [
            from_dnslib(rr)
            for rtype, rrset in node.items()
            if rtype != QTYPE.SOA
            for rr in rrset.records
        ]

    def fallbacks(self) -> list[Fallback]:
        zone = self.authority.zone
        ns = labels_of(names.ns_name(zone))
        hosts = (packed_address(h) for h in dict.fromkeys(self.records.ns_addresses))
        own = tuple((ns, a[0], self.ttl, a[1]) for a in hosts if a is not None)
        found = [Fallback(ns, NameQuery(names.Kind.HOST, service=names.NS_LABEL), own)]
        static = self.authority.zones.get(zone)
        for name, node in (static.nodes if static is not None else {}).items():
            query = names.parse(name, zone)
            if name == zone or (query is not None and query.kind is names.Kind.NS_HOST):
                continue  # the apex is merged; ns.Z is always the registry's
            records = tuple(from_dnslib(rr) for rrset in node.values() for rr in rrset.records)
            found.append(Fallback(labels_of(name), query, records))
        return found

    def shown(self, fallback: Fallback) -> bool:
        """Whether the fallback's records are in the zone now (authority.py's rule)."""
        if fallback.query is None:
            return True
        return self.records.node(fallback.query) is None

    # -- the whole zone

    def snapshot(self) -> Snapshot:
        discovery = self.discovery
        return Snapshot(
            discovery.index,
            self.soa(),
            tuple(self.apex()),
            {svc: discovery.live(svc) for svc in discovery.live_services()},
            tuple(f for f in self.fallbacks() if self.shown(f)),
        )

    def listing(self, snapshot: Snapshot) -> Iterator[Record]:
        """Every record of the snapshot but the SOA, made as they are sent."""
        yield from snapshot.apex
        for svc, live in snapshot.services.items():
            for inst in live:
                yield from self.instance(inst)
            yield from self.service(svc, live)
        for fallback in snapshot.fallbacks:
            yield from fallback.records


def static_listing(zone: StaticZone) -> tuple[Record, list[Record]]:
    """A zone file's SOA and its other records."""
    assert zone.soa is not None  # load_file requires one
    others = [
        from_dnslib(rr)
        for name, node in zone.nodes.items()
        for rtype, rrset in node.items()
        if not (rtype == QTYPE.SOA and name == zone.origin)
        for rr in rrset.records
    ]
    return from_dnslib(zone.soa), others
