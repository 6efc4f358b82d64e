"""Which zone answers a name, and how the registry and static data combine (pure).

The zone is the longest one containing the name. In the registry zone a name the
registry knows is answered from the registry alone ("registry names take precedence");
other names fall through to the registry zone's own zone file, if there is one. The
apex merges both: the file may set SOA fields and NS, the registry sets the serial.
"""

from __future__ import annotations

from collections.abc import Mapping

from dnslib import QTYPE, RCODE, RR, SOA

from jarvis_dns.dns import names
from jarvis_dns.dns.records import (
    Answer,
    Node,
    Pick,
    RegistryRecords,
    RRset,
    answer_for,
    nxdomain,
)
from jarvis_dns.dns.zones import StaticZone

# RFC 1034 3.6.2 allows chains; 8 links is far beyond any sane zone and stops loops.
MAX_CNAME_CHAIN = 8


class Authority:
    def __init__(
        self, records: RegistryRecords, zones: Mapping[str, StaticZone] | None = None
    ) -> None:
        self.records = records
        self.zone = records.zone
        self.zones: Mapping[str, StaticZone] = zones or {}

    def origins(self) -> list[str]:
        return sorted({self.zone, *self.zones})

    def lookup(self, qname: str, qtype: int, pick: Pick | None = None) -> Answer | None:
        """The answer for a normalised name; None when no zone of ours contains it.

        ``pick``: which of a service's instances to answer (the UDP answer limit)."""
        origin = self.zone_of(qname)
        if origin is None:
            return None
        node, soa = self._node(origin, qname, pick)
        if node is None:
            return nxdomain(soa)
        cname = node.get(QTYPE.CNAME)
        if cname is not None and qtype not in (QTYPE.CNAME, QTYPE.ANY):
            return self._chase(cname, qtype)
        return answer_for(node, qname, qtype, soa, self.records.ttl)

    def rrsets(self, qname: str) -> Node | None:
        """A normalised name's RRsets as answers show them; None when it does not exist
        (or no zone of ours contains it). For UPDATE prerequisites and transfers."""
        origin = self.zone_of(qname)
        return None if origin is None else self._node(origin, qname)[0]

    def zone_of(self, qname: str) -> str | None:
        found = [o for o in (self.zone, *self.zones) if names.in_zone(qname, o)]
        return max(found, key=len) if found else None

    def _node(self, origin: str, qname: str, pick: Pick | None = None) -> tuple[Node | None, RR]:
        static = self.zones.get(origin)
        if origin != self.zone:
            assert static is not None and static.soa is not None  # load_file requires it
            return static.node(qname), static.soa
        soa = self._registry_soa(static)
        query = names.parse(qname, self.zone)
        node = None
        if query is not None:
            node = self.records.node(query, pick) if pick else self.records.node(query)
        if query is not None and query.kind is names.Kind.APEX:
            node = self._apex(node or {}, static, soa)
        elif node is None and static is not None:
            node = static.node(qname)
        return node, soa

    def _registry_soa(self, static: StaticZone | None) -> RR:
        """The zone file's SOA if it has one, with the registry's change index as serial."""
        own = self.records.soa()
        if static is None or static.soa is None:
            return own
        base = static.soa
        times = (own.rdata.times[0], *base.rdata.times[1:])
        return RR(
            base.rname, QTYPE.SOA, 1, base.ttl, SOA(base.rdata.mname, base.rdata.rname, times)
        )

    def _apex(self, registry: Node, static: StaticZone | None, soa: RR) -> Node:
        merged = dict(registry)
        if static is not None:
            merged.update(static.node(self.zone) or {})
        merged[QTYPE.SOA] = RRset((soa,))
        return merged

    def _chase(self, rrset: RRset, qtype: int) -> Answer:
        """Follow CNAMEs within our zones; the final rcode is the last name's (RFC 6604)."""
        chain: list[RR] = []
        final = Answer(RCODE.NOERROR)  # a chain too long ends with what it has
        for _ in range(MAX_CNAME_CHAIN):
            link = rrset.records[0]
            chain.append(link)
            target = str(link.rdata.label).lower()
            following = self._cname_at(target)
            if following is None:
                final = self._follow(target, qtype)
                break
            rrset = following
        return Answer(
            final.rcode,
            answer=(*chain, *final.answer),
            authority=final.authority,
            additional=final.additional,
        )

    def _follow(self, target: str, qtype: int) -> Answer:
        origin = self.zone_of(target)
        if origin is None:
            return Answer(RCODE.NOERROR)  # out of our zones: the client resolves it
        node, soa = self._node(origin, target)
        if node is None:
            return nxdomain(soa)
        return answer_for(node, target, qtype, soa, self.records.ttl)

    def _cname_at(self, target: str) -> RRset | None:
        origin = self.zone_of(target)
        if origin is None:
            return None
        node, _ = self._node(origin, target)
        return (node or {}).get(QTYPE.CNAME)
