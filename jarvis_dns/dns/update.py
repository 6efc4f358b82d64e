"""DNS UPDATE (RFC 2136) -> registry commands (pure).

An UPDATE to the registry zone names instances the way answers do, and is mapped onto
the same commands HTTP builds (``Register``, ``SetStatus`` when only busy or status
moved, ``Deregister``), checked whole before any runs, so a refused update changes
nothing:

* ``<id>._<svc>._tcp.Z`` SRV: adds or changes instance ``<id>`` of ``<svc>``: the SRV's
  port and weight (1-65535; the priority is the server's: 0 idle, 10 busy), its TTL the
  instance's heartbeat TTL (send the update again, or heartbeat over HTTP, before it runs
  out), its target either ``<id>.<svc>.Z`` (the address comes from an A or AAAA record
  there, in the update or registered before) or a host name outside the zone. An
  instance has one SRV: adding one replaces it.
* TXT at either instance name: ``key=value`` metadata (RFC 6763 6); a value that is a
  JSON list or object (``tags=["gpu"]``) is kept as such; ``busy=true|false`` and
  ``status=active|maintenance|dead`` set those fields.
* Deleting the instance's name, or its SRV: deregisters it.
* PTR at ``_<svc>._tcp.Z`` pointing to one of its instances: accepted and ignored (DNS-SD
  clients send it; the registry makes it from the SRV).

Prerequisites (RFC 2136 2.4) are checked against the zone as answers show it. RCODEs:
FORMERR for malformed updates, NOTZONE for names outside the zone, NOTAUTH for a zone
that is not ours, REFUSED for what the key may not do or the registry cannot hold, and
NXDOMAIN / YXDOMAIN / NXRRSET / YXRRSET for failed prerequisites.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from jarvis_dns import validate
from jarvis_dns.dns import names
from jarvis_dns.dns.names import Kind
from jarvis_dns.errors import ValidationError
from jarvis_dns.models import Instance, InstanceId, InstanceSpec, JSONObject, Key
from jarvis_dns.registry.commands import Deregister, Register, SetStatus

Rcode = int
# A name's RRsets as the zone has them: type -> canonical rdata; None: no such name.
Lookup = Callable[[str], dict[int, set[bytes]] | None]
Find = Callable[[str, InstanceId], Instance | None]
Allowed = Callable[[str], bool]  # may the update's key change this service?
Command = Register | SetStatus | Deregister
# RFC 2136 3.4.1.3: types that cannot be added or deleted.
_META = frozenset(
    {dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.MAILA, dns.rdatatype.MAILB}
)
_ADDRESS = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
# TXT keys that are the instance's own fields (records.txt_strings writes them last).
_FIELDS = frozenset({"busy", "status"})


class Refused(Exception):
    """The update is answered with ``rcode`` and changes nothing; ``reason`` is logged."""

    def __init__(self, rcode: Rcode, reason: str) -> None:
        super().__init__(reason)
        self.rcode = rcode


@dataclass(slots=True)
class _Draft:
    """One instance as the update leaves it."""

    service_type: str
    instance_id: InstanceId
    base: Instance | None
    exists: bool
    srv: tuple[int, int, dns.name.Name] | None = None  # weight, port, target
    ttl_s: float | None = None
    host: str | None = None
    metadata: JSONObject = field(default_factory=dict)
    busy: bool | None = None
    status: str | None = None

    @classmethod
    def of(cls, service_type: str, instance_id: InstanceId, base: Instance | None) -> _Draft:
        draft = cls(service_type, instance_id, base, base is not None)
        if base is not None:
            draft.ttl_s, draft.host = base.ttl_s, base.host
            draft.metadata = dict(base.metadata)
        return draft


def plan_update(
    msg: dns.message.Message,
    zone: str,
    allowed: Allowed,
    lookup: Lookup,
    find: Find,
    who: str = "",
) -> list[Command]:
    """The commands an UPDATE asks for, in order; raises Refused.

    who: the signing key's name, for the events' reasons."""
    origin = dns.name.from_text(zone)
    _check_zone(msg, origin)
    updates = msg.sections[2]
    for rrset in updates:
        _prescan(rrset, origin)
    names_ = [(rrset, _row(rrset.name, zone)) for rrset in updates]
    for svc in sorted({row[1] for _, row in names_ if row is not None}):
        if not allowed(svc):
            raise Refused(dns.rcode.REFUSED, f"the key may not change service {svc}")
    for rrset in msg.sections[1]:
        _prerequisite(rrset, origin, lookup)
    _value_prerequisites(msg.sections[1], lookup)
    drafts: dict[Key, _Draft] = {}
    for rrset, row in names_:
        if row is None:
            raise Refused(dns.rcode.REFUSED, f"{rrset.name}: not an instance's name")
        kind, svc, iid = row
        key = (svc, str(iid))
        if key not in drafts:
            drafts[key] = _Draft.of(svc, iid, find(svc, iid))
        _apply(drafts[key], kind, rrset, zone)
    by = f"DNS UPDATE (key {who})" if who else "DNS UPDATE"
    return [c for draft in drafts.values() for c in _commands(draft, zone, by)]


# -- the zone section and the prescan (RFC 2136 3.1, 3.4.1)


def _check_zone(msg: dns.message.Message, origin: dns.name.Name) -> None:
    zones = msg.sections[0]
    if len(zones) != 1 or zones[0].rdtype != dns.rdatatype.SOA:
        raise Refused(dns.rcode.FORMERR, "the zone section must hold one SOA question")
    if zones[0].rdclass != dns.rdataclass.IN:
        raise Refused(dns.rcode.NOTAUTH, "only class IN is served")
    if zones[0].name != origin:
        raise Refused(dns.rcode.NOTAUTH, f"{zones[0].name} is not the registry zone")


def _prescan(rrset: dns.rrset.RRset, origin: dns.name.Name) -> None:
    if not rrset.name.is_subdomain(origin):
        raise Refused(dns.rcode.NOTZONE, f"{rrset.name} is outside {origin}")
    if rrset.deleting is None:
        if rrset.rdclass != dns.rdataclass.IN:
            raise Refused(dns.rcode.FORMERR, "records are added in class IN")
        if rrset.rdtype in _META or rrset.rdtype == dns.rdatatype.ANY:
            raise Refused(dns.rcode.FORMERR, "cannot add a meta type")
    elif rrset.ttl != 0 or rrset.rdtype in _META:
        raise Refused(dns.rcode.FORMERR, "a deletion needs TTL 0 and a real type")
    elif rrset.deleting == dns.rdataclass.NONE and rrset.rdtype == dns.rdatatype.ANY:
        raise Refused(dns.rcode.FORMERR, "class NONE cannot delete type ANY")


def _row(name: dns.name.Name, zone: str) -> tuple[Kind, str, InstanceId] | None:
    """(kind, service, instance) of an update's name; None when it names no instance."""
    query = names.parse(name.to_text().lower(), zone)
    if query is None or query.kind not in (
        Kind.SERVICE_INSTANCE,
        Kind.INSTANCE_HOST,
        Kind.SERVICE,
    ):
        return None
    try:
        svc = validate.service_type(query.service)
        iid: InstanceId = validate.instance_id(query.instance) if query.instance else ""
    except ValidationError:
        return None
    return query.kind, svc, iid


# -- prerequisites (RFC 2136 2.4, 3.2)


def _prerequisite(rrset: dns.rrset.RRset, origin: dns.name.Name, lookup: Lookup) -> None:
    name = rrset.name
    if not name.is_subdomain(origin):
        raise Refused(dns.rcode.NOTZONE, f"prerequisite {name} is outside {origin}")
    if rrset.ttl != 0:
        raise Refused(dns.rcode.FORMERR, "a prerequisite needs TTL 0")
    if rrset.deleting is None:
        if rrset.rdclass != dns.rdataclass.IN:
            raise Refused(dns.rcode.FORMERR, "a prerequisite of an unknown class")
        return  # value-dependent: compared RRset by RRset below
    node = lookup(name.to_text().lower())
    in_use = node is not None and any(node.values())
    has_type = node is not None and bool(node.get(rrset.rdtype))
    if rrset.deleting == dns.rdataclass.ANY:
        if rrset.rdtype == dns.rdatatype.ANY and not in_use:
            raise Refused(dns.rcode.NXDOMAIN, f"prerequisite: {name} is not in use")
        if rrset.rdtype != dns.rdatatype.ANY and not has_type:
            raise Refused(dns.rcode.NXRRSET, f"prerequisite: {name} has no {_type(rrset)}")
    elif rrset.deleting == dns.rdataclass.NONE:
        if rrset.rdtype == dns.rdatatype.ANY and in_use:
            raise Refused(dns.rcode.YXDOMAIN, f"prerequisite: {name} is in use")
        if rrset.rdtype != dns.rdatatype.ANY and has_type:
            raise Refused(dns.rcode.YXRRSET, f"prerequisite: {name} has {_type(rrset)}")
    else:
        raise Refused(dns.rcode.FORMERR, "a prerequisite of an unknown class")


def _value_prerequisites(prerequisites: Iterable[dns.rrset.RRset], lookup: Lookup) -> None:
    """RFC 2136 3.2.3: the RRsets given with values must equal the zone's exactly."""
    wanted: dict[tuple[str, int], set[bytes]] = {}
    for rrset in prerequisites:
        if rrset.deleting is None:
            key = (rrset.name.to_text().lower(), int(rrset.rdtype))
            wanted.setdefault(key, set()).update(_canonical(rd) for rd in rrset)
    for (name, rdtype), rdatas in wanted.items():
        node = lookup(name) or {}
        if node.get(rdtype, set()) != rdatas:
            raise Refused(dns.rcode.NXRRSET, f"prerequisite: {name} differs")


def _canonical(rd: dns.rdata.Rdata) -> bytes:
    return rd.to_digestable()


def _type(rrset: dns.rrset.RRset) -> str:
    return dns.rdatatype.to_text(rrset.rdtype)


# -- the update section, instance by instance


def _apply(draft: _Draft, kind: Kind, rrset: dns.rrset.RRset, zone: str) -> None:
    if kind is Kind.SERVICE:
        _service_name(draft, rrset, zone)
        return
    rdtype, deleting = rrset.rdtype, rrset.deleting
    if deleting == dns.rdataclass.ANY and rdtype == dns.rdatatype.ANY:
        draft.exists, draft.srv = False, None
    elif rdtype == dns.rdatatype.TXT:
        _txt(draft, rrset)
    elif kind is Kind.SERVICE_INSTANCE and rdtype == dns.rdatatype.SRV:
        _srv(draft, rrset, zone)
    elif kind is Kind.INSTANCE_HOST and rdtype in _ADDRESS:
        _address(draft, rrset)
    else:
        raise Refused(
            dns.rcode.REFUSED,
            f"{rrset.name}: {_type(rrset)} is not an instance's record here "
            "(SRV and TXT at <id>._<svc>._tcp, A, AAAA and TXT at <id>.<svc>)",
        )


def _service_name(draft: _Draft, rrset: dns.rrset.RRset, zone: str) -> None:
    """DNS-SD's PTR: implied by the SRV, so only checked."""
    if rrset.rdtype != dns.rdatatype.PTR:
        raise Refused(dns.rcode.REFUSED, f"{rrset.name}: only PTR is accepted here")
    for rd in rrset:
        row = _row(rd.target, zone)
        if row is None or row[0] is not Kind.SERVICE_INSTANCE or row[1] != draft.service_type:
            raise Refused(dns.rcode.REFUSED, f"{rrset.name}: PTR to {rd.target}")


def _srv(draft: _Draft, rrset: dns.rrset.RRset, zone: str) -> None:
    if rrset.deleting is None:
        rd = list(rrset)[-1]  # one SRV an instance: the last added wins
        draft.exists, draft.srv, draft.ttl_s = True, (rd.weight, rd.port, rd.target), rrset.ttl
        return
    if rrset.deleting == dns.rdataclass.ANY or any(_is_srv(draft, rd, zone) for rd in rrset):
        draft.exists, draft.srv = False, None


def _is_srv(draft: _Draft, rd: Any, zone: str) -> bool:
    """Whether a SRV to delete is the instance's (its port and target; the priority and
    weight shown move with busy)."""
    if draft.srv is not None:
        return bool(draft.srv[1] == rd.port and draft.srv[2] == rd.target)
    own = _own_name(draft, zone)
    return draft.base is not None and draft.base.port == rd.port and rd.target == own


def _address(draft: _Draft, rrset: dns.rrset.RRset) -> None:
    if rrset.deleting is None:
        draft.host = list(rrset)[-1].address
    elif rrset.deleting == dns.rdataclass.ANY or any(rd.address == draft.host for rd in rrset):
        draft.host = None


def _txt(draft: _Draft, rrset: dns.rrset.RRset) -> None:
    if rrset.deleting == dns.rdataclass.ANY:
        draft.metadata = {}
        return
    for rd in rrset:
        for key, value in _pairs(rd.strings):
            if rrset.deleting is not None:
                draft.metadata.pop(key, None)
            elif key == "busy":
                draft.busy = _busy(value)
            elif key == "status":
                draft.status = str(value)
            else:
                draft.metadata[key] = value


def _pairs(strings: Iterable[bytes]) -> Iterable[tuple[str, Any]]:
    """RFC 6763 6.3-6.5: ``key=value``; a key alone is a boolean attribute (true)."""
    for raw in strings:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise Refused(dns.rcode.REFUSED, "TXT strings must be UTF-8") from None
        key, sep, value = text.partition("=")
        if not key:
            raise Refused(dns.rcode.REFUSED, f"TXT {text!r}: no key")
        yield key.lower() if key.lower() in _FIELDS else key, _value(value) if sep else True


def _value(text: str) -> Any:
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _busy(value: Any) -> bool:
    if value in ("true", "false"):
        return bool(value == "true")
    raise Refused(dns.rcode.REFUSED, "TXT busy= must be true or false")


# -- drafts -> commands


def _commands(draft: _Draft, zone: str, by: str) -> list[Command]:
    base = draft.base
    if not draft.exists:
        if base is None:
            return []  # deleting what is not there changes nothing (RFC 2136 3.4.2.3)
        return [Deregister(draft.service_type, draft.instance_id, f"deregistered by {by}")]
    try:
        spec = validate.register_body(_body(draft, zone), None)
    except ValidationError as exc:
        raise Refused(dns.rcode.REFUSED, f"{exc.field}: {exc}") from None
    was = _spec_of(base) if base is not None else None
    if was is not None and spec != was and replace(spec, busy=was.busy, status=was.status) == was:
        # Only busy or status moved: the command HTTP's status route sends, so the
        # events say busy/maintenance (and a busy flip is liveness, not a rewrite).
        status = spec.status if spec.status is not was.status else None
        busy = spec.busy if spec.busy != was.busy else None
        return [SetStatus(spec.service_type, spec.instance_id, status, busy, by)]
    return [Register(spec)]  # the same again is a heartbeat: it renews the TTL


def _spec_of(inst: Instance) -> InstanceSpec:
    return InstanceSpec(**{f.name: getattr(inst, f.name) for f in dataclasses.fields(InstanceSpec)})


def _body(draft: _Draft, zone: str) -> JSONObject:
    base = draft.base
    if draft.srv is not None:
        weight, port, target = draft.srv
    elif base is not None:
        weight, port, target = base.weight, base.port, None
    else:
        raise Refused(dns.rcode.REFUSED, "a new instance needs its SRV record")
    body: JSONObject = {
        "service_type": draft.service_type,
        "instance_id": draft.instance_id,
        "host": _host(draft, target, zone),
        "port": port,
        "metadata": draft.metadata,
        "weight": weight,
        "busy": draft.busy if draft.busy is not None else (base.busy if base else False),
        "status": draft.status or (base.status.value if base else "active"),
        "ttl_s": draft.ttl_s,
    }
    if base is not None:
        body["check"] = base.check.to_dict() if base.check else None
        body["deregister_after_s"] = base.deregister_after_s
    return body


def _own_name(draft: _Draft, zone: str) -> dns.name.Name:
    """``<id>.<svc>.Z``: the instance's host name, every SRV's target in answers."""
    return dns.name.from_text(names.target_name(str(draft.instance_id), draft.service_type, zone))


def _host(draft: _Draft, target: dns.name.Name | None, zone: str) -> str:
    own = _own_name(draft, zone)
    if target is not None and target != own:
        if target.is_subdomain(dns.name.from_text(zone)):
            raise Refused(dns.rcode.REFUSED, f"SRV target {target}: want {own} or a name outside")
        return str(target.to_text(omit_final_dot=True))
    if draft.host is None:
        raise Refused(dns.rcode.REFUSED, f"SRV target {own} needs an A or AAAA record")
    return draft.host
