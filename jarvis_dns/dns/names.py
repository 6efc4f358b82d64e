"""Query names of the registry zone <-> what they ask for (pure).

Every name is handled lower-case and absolute (ending in a dot). ``parse`` maps a name
inside the registry zone onto one row of the naming table (DESIGN.md, "DNS naming
scheme"); the ``*_name`` builders go the other way, for the records' own names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    APEX = "apex"  # Z: SOA, NS
    NS_HOST = "ns-host"  # ns.Z: the address of the synthesised name server
    SERVICE = "service"  # _<svc>._tcp.Z: SRV, PTR
    SERVICE_INSTANCE = "service-instance"  # <id>._<svc>._tcp.Z: SRV, TXT
    HOST = "host"  # <svc>.Z: A, AAAA
    INSTANCE_HOST = "instance-host"  # <id>.<svc>.Z: A, AAAA, TXT
    SUBTYPE = "subtype"  # _<tag>._sub._<svc>._tcp.Z: PTR, SRV
    SERVICES = "services"  # _services._dns-sd._udp.Z: PTR
    # Empty non-terminals (RFC 8020): they exist because names below them do.
    TCP = "_tcp"  # _tcp.Z
    SUB = "_sub"  # _sub._<svc>._tcp.Z
    UDP = "_udp"  # _udp.Z and _dns-sd._udp.Z


@dataclass(frozen=True, slots=True)
class NameQuery:
    kind: Kind
    service: str = ""
    instance: str = ""
    tag: str = ""


NS_LABEL = "ns"


def normalize(name: str) -> str:
    """Lower-case and absolute: the one form names are compared in."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def relative(qname: str, zone: str) -> list[str] | None:
    """Labels of qname left of zone, or None when qname is outside it."""
    if qname == zone:
        return []
    if zone == ".":
        return qname.rstrip(".").split(".")
    if not qname.endswith("." + zone):
        return None
    return qname[: -len(zone) - 1].split(".")


def in_zone(qname: str, zone: str) -> bool:
    return relative(qname, zone) is not None


def _service_label(label: str) -> str | None:
    """'_web' -> 'web'; None when the label is not a service label."""
    if len(label) > 1 and label.startswith("_"):
        return label[1:]
    return None


def _parse_tcp(labels: list[str]) -> NameQuery | None:
    """Names ending in ``_<svc>._tcp``; labels are what precedes ``_tcp``."""
    if not labels:
        return NameQuery(Kind.TCP)
    svc = _service_label(labels[-1])
    if svc is None:
        return None
    rest = labels[:-1]
    if not rest:
        return NameQuery(Kind.SERVICE, service=svc)
    if len(rest) == 1 and rest[0] == "_sub":
        return NameQuery(Kind.SUB, service=svc)
    if len(rest) == 1 and not rest[0].startswith("_"):
        return NameQuery(Kind.SERVICE_INSTANCE, service=svc, instance=rest[0])
    if len(rest) == 2 and rest[1] == "_sub":
        tag = _service_label(rest[0])
        return NameQuery(Kind.SUBTYPE, service=svc, tag=tag) if tag else None
    return None


def _parse_udp(labels: list[str]) -> NameQuery | None:
    if labels in ([], ["_dns-sd"]):
        return NameQuery(Kind.UDP)
    if labels == ["_services", "_dns-sd"]:
        return NameQuery(Kind.SERVICES)
    return None


def parse(qname: str, zone: str) -> NameQuery | None:
    """Classify a normalised qname; None when no row of the table matches it."""
    labels = relative(qname, zone)
    if labels is None:
        return None
    if not labels:
        return NameQuery(Kind.APEX)
    if labels[-1] == "_tcp":
        return _parse_tcp(labels[:-1])
    if labels[-1] == "_udp":
        return _parse_udp(labels[:-1])
    if any(label.startswith("_") for label in labels) or len(labels) > 2:
        return None
    if len(labels) == 2:
        return NameQuery(Kind.INSTANCE_HOST, service=labels[1], instance=labels[0])
    if labels[0] == NS_LABEL:
        return NameQuery(Kind.NS_HOST)
    return NameQuery(Kind.HOST, service=labels[0])


def service_name(svc: str, zone: str) -> str:
    return f"_{svc}._tcp.{zone}"


def service_instance_name(instance: str, svc: str, zone: str) -> str:
    return f"{instance}._{svc}._tcp.{zone}"


def host_name(svc: str, zone: str) -> str:
    return f"{svc}.{zone}"


def target_name(instance: str, svc: str, zone: str) -> str:
    return f"{instance}.{svc}.{zone}"


def subtype_name(tag: str, svc: str, zone: str) -> str:
    return f"_{tag}._sub._{svc}._tcp.{zone}"


def services_name(zone: str) -> str:
    return f"_services._dns-sd._udp.{zone}"


def ns_name(zone: str) -> str:
    return f"{NS_LABEL}.{zone}"


def hostmaster_name(zone: str) -> str:
    return f"hostmaster.{zone}"
