"""Static zones: BIND master-format files (RFC 1035 section 5) from a directory.

Each ``*.zone`` file is one zone. Its name is the ``$ORIGIN`` set before the first
record, else the file name without ``.zone`` (``example.internal.zone`` serves
``example.internal.``). Supported: ``$ORIGIN``, ``$TTL``, ``@``, relative names, a blank
owner meaning "the previous one", parentheses across lines, ``;`` comments, quoted
strings, TTL units (``1h30m``), and the types A, AAAA, CNAME, NS, PTR, MX, TXT, SRV,
SOA and CAA. Not supported (an error names the line): ``$INCLUDE``, ``$GENERATE``, other
types. Wildcards and delegations are served as plain names.

Any problem raises ZoneError("file:line: what"). ``ZoneSet.reload`` parses every file
before swapping, so a broken file leaves the previously loaded zones in service.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, QTYPE, RR, SOA, SRV, TXT, A

from jarvis_dns.dns import names
from jarvis_dns.dns.records import MAX_TXT_STRING, Node, RRset, label
from jarvis_dns.errors import ZoneError

ZONE_SUFFIX = ".zone"
# RFC 2308 section 4 suggests hours to days for static data; one hour is BIND's habit.
DEFAULT_TTL = 3600
MAX_NAME = 253  # RFC 1035 2.3.4: 255 octets on the wire, 253 characters in text
MAX_LABEL = 63
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_RE = re.compile(r"(\d+)([smhdw]?)", re.IGNORECASE)
_CLASSES = ("IN",)


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    quoted: bool = False


@dataclass(slots=True)
class Entry:
    """One logical line: its first physical line, whether it starts blank, its tokens."""

    line: int
    indented: bool
    tokens: list[Token]


@dataclass(slots=True)
class StaticZone:
    origin: str
    path: str
    nodes: dict[str, Node] = field(default_factory=dict)
    # Names that exist only because names below them do (RFC 8020).
    ents: set[str] = field(default_factory=set)

    @property
    def soa(self) -> RR | None:
        rrset = self.nodes.get(self.origin, {}).get(QTYPE.SOA)
        return rrset.records[0] if rrset else None

    def node(self, qname: str) -> Node | None:
        found = self.nodes.get(qname)
        if found is not None:
            return found
        return {} if qname in self.ents else None


# -- tokenizer ---------------------------------------------------------------------


def _escape(text: str, i: int) -> tuple[str, int]:
    """Decode the escape at text[i] == '\\': ``\\DDD`` or ``\\X``; returns (char, next i)."""
    digits = text[i + 1 : i + 4]
    if len(digits) == 3 and digits.isdigit():
        return chr(int(digits)), i + 4
    if i + 1 < len(text):
        return text[i + 1], i + 2
    return "\\", i + 1


def _quoted(text: str, i: int, where: tuple[str, int]) -> tuple[Token, int]:
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return Token("".join(out), quoted=True), i + 1
        if c == "\\":
            c, i = _escape(text, i)
        else:
            i += 1
        out.append(c)
    raise ZoneError("unterminated quoted string", *where)


def _word(text: str, i: int) -> tuple[Token, int]:
    out: list[str] = []
    while i < len(text) and text[i] not in ' \t;()"':
        if text[i] == "\\":
            c, i = _escape(text, i)
            out.append(c)
        else:
            out.append(text[i])
            i += 1
    return Token("".join(out)), i


def _tokens(text: str, where: tuple[str, int]) -> Iterator[Token]:
    """Tokens of one physical line; '(' and ')' come through as their own tokens."""
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r":
            i += 1
        elif c == ";":
            return
        elif c in "()":
            yield Token(c)
            i += 1
        elif c == '"':
            tok, i = _quoted(text, i, where)
            yield tok
        else:
            tok, i = _word(text, i)
            yield tok


def entries(text: str, path: str) -> Iterator[Entry]:
    """Logical lines: parentheses join physical lines (RFC 1035 section 5.1)."""
    depth, current = 0, None
    for lineno, line in enumerate(text.splitlines(), start=1):
        for tok in _tokens(line, (path, lineno)):
            if current is None:
                current = Entry(lineno, line[:1] in (" ", "\t"), [])
            if tok.text in ("(", ")") and not tok.quoted:
                depth += 1 if tok.text == "(" else -1
                if depth < 0:
                    raise ZoneError("unbalanced ')'", path, lineno)
                continue
            current.tokens.append(tok)
        if depth == 0 and current is not None:
            if current.tokens:
                yield current
            current = None
    if depth:
        raise ZoneError("unbalanced '(' at end of file", path, current.line if current else 0)


# -- record parsing ------------------------------------------------------------------


def parse_ttl(text: str) -> int:
    """'3600', '1h', '1h30m' -> seconds; ValueError otherwise."""
    if text.isdigit():
        return int(text)
    parts = _TTL_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
        raise ValueError(f"bad TTL {text!r}")
    return sum(int(n) * _TTL_UNITS[(u or "s").lower()] for n, u in parts)


def _absolute(name: str, origin: str) -> str:
    if name == "@":
        return origin
    full = name if name.endswith(".") else f"{name}.{origin}"
    if full != "." and (len(full) > MAX_NAME + 1 or ".." in full):
        raise ValueError(f"bad name {name!r}")
    if any(len(part) > MAX_LABEL for part in full.split(".")):
        raise ValueError(f"label longer than {MAX_LABEL} in {name!r}")
    return names.normalize(full) if full != "." else "."


def _u16(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{text} is out of 0-65535")
    return value


def _args(rd: list[Token], count: int, rtype: str) -> list[str]:
    if len(rd) != count:
        raise ValueError(f"{rtype} takes {count} fields, got {len(rd)}")
    return [t.text for t in rd]


def _rd_a(rd: list[Token], origin: str) -> Any:
    return A(str(ipaddress.IPv4Address(_args(rd, 1, "A")[0])))


def _rd_aaaa(rd: list[Token], origin: str) -> Any:
    return AAAA(ipaddress.IPv6Address(_args(rd, 1, "AAAA")[0]).exploded)


def _rd_name(cls: Any, rtype: str) -> Callable[[list[Token], str], Any]:
    return lambda rd, origin: cls(label(_absolute(_args(rd, 1, rtype)[0], origin)))


def _rd_mx(rd: list[Token], origin: str) -> Any:
    pref, host = _args(rd, 2, "MX")
    return MX(label(_absolute(host, origin)), _u16(pref))


def _rd_srv(rd: list[Token], origin: str) -> Any:
    prio, weight, port, target = _args(rd, 4, "SRV")
    return SRV(_u16(prio), _u16(weight), _u16(port), label(_absolute(target, origin)))


def _rd_txt(rd: list[Token], origin: str) -> Any:
    if not rd:
        raise ValueError("TXT needs at least one string")
    data = [t.text.encode() for t in rd]
    if any(len(d) > MAX_TXT_STRING for d in data):
        raise ValueError(f"a TXT string is longer than {MAX_TXT_STRING} bytes")
    return TXT(data)


def _rd_soa(rd: list[Token], origin: str) -> Any:
    fields = _args(rd, 7, "SOA")
    times = [parse_ttl(t) for t in fields[2:]]
    if any(t >= 2**32 for t in times):
        raise ValueError("SOA numbers are 32 bits")
    return SOA(label(_absolute(fields[0], origin)), label(_absolute(fields[1], origin)), times)


def _rd_caa(rd: list[Token], origin: str) -> Any:
    flags, tag, value = _args(rd, 3, "CAA")
    return CAA(int(flags), tag, value)


_RDATA: dict[str, Callable[[list[Token], str], Any]] = {
    "A": _rd_a,
    "AAAA": _rd_aaaa,
    "CNAME": _rd_name(CNAME, "CNAME"),
    "NS": _rd_name(NS, "NS"),
    "PTR": _rd_name(PTR, "PTR"),
    "MX": _rd_mx,
    "TXT": _rd_txt,
    "SRV": _rd_srv,
    "SOA": _rd_soa,
    "CAA": _rd_caa,
}


@dataclass(slots=True)
class _State:
    path: str
    origin: str
    ttl: int = DEFAULT_TTL
    owner: str | None = None
    records: list[tuple[int, RR]] = field(default_factory=list)


def _directive(state: _State, entry: Entry) -> None:
    word, args = entry.tokens[0].text.upper(), [t.text for t in entry.tokens[1:]]
    if word == "$ORIGIN" and len(args) == 1:
        state.origin = _absolute(args[0], state.origin)
    elif word == "$TTL" and len(args) == 1:
        state.ttl = parse_ttl(args[0])
    else:
        raise ValueError(f"unsupported directive {entry.tokens[0].text}")


def _is_ttl_or_class(tok: Token) -> bool:
    return not tok.quoted and (tok.text.upper() in _CLASSES or tok.text[:1].isdigit())


def _record(state: _State, entry: Entry) -> RR:
    toks = list(entry.tokens)
    if not entry.indented:
        state.owner = _absolute(toks.pop(0).text, state.origin)
    if state.owner is None:
        raise ValueError("no owner name")
    ttl = state.ttl
    while toks and _is_ttl_or_class(toks[0]):
        head = toks.pop(0).text
        if head.upper() not in _CLASSES:
            ttl = parse_ttl(head)
    if not toks:
        raise ValueError("missing record type")
    rtype = toks.pop(0).text.upper()
    if rtype not in _RDATA:
        raise ValueError(f"unsupported record type {rtype}")
    return RR(label(state.owner), getattr(QTYPE, rtype), 1, ttl, _RDATA[rtype](toks, state.origin))


def _parse_entries(state: _State, text: str) -> None:
    for entry in entries(text, state.path):
        try:
            if entry.tokens[0].text.startswith("$") and not entry.indented:
                _directive(state, entry)
            else:
                state.records.append((entry.line, _record(state, entry)))
        except ZoneError:
            raise
        except Exception as exc:  # dnslib and int() raise many kinds; all mean "bad line"
            raise ZoneError(str(exc) or type(exc).__name__, state.path, entry.line) from exc


def _zone_origin(path: Path, text: str) -> str:
    """The $ORIGIN before the first record, else the file name."""
    for entry in entries(text, str(path)):
        first = entry.tokens[0].text
        if first.upper() == "$ORIGIN" and len(entry.tokens) == 2:
            return names.normalize(entry.tokens[1].text)
        if not first.startswith("$"):
            break
    return names.normalize(path.name[: -len(ZONE_SUFFIX)])


def _add(zone: StaticZone, line: int, record: RR) -> None:
    owner = str(record.rname).lower()
    if names.relative(owner, zone.origin) is None:
        raise ZoneError(f"{owner} is outside the zone {zone.origin}", zone.path, line)
    node = zone.nodes.setdefault(owner, {})
    rrset = node.get(record.rtype, RRset(()))
    if record.rtype == QTYPE.SOA and (owner != zone.origin or rrset.records):
        raise ZoneError("one SOA only, at the zone apex", zone.path, line)
    others = any(t != QTYPE.CNAME for t in node)
    if (QTYPE.CNAME in node and record.rtype != QTYPE.CNAME) or (
        record.rtype == QTYPE.CNAME and others
    ):
        raise ZoneError("a CNAME cannot share its name with other data", zone.path, line)
    node[record.rtype] = RRset((*rrset.records, record))


def _add_ents(zone: StaticZone) -> None:
    for owner in list(zone.nodes):
        labels = names.relative(owner, zone.origin) or []
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:]) + "." + zone.origin
            if parent not in zone.nodes:
                zone.ents.add(parent)


def _glue_for(zone: StaticZone, rrset: RRset) -> RRset:
    """A/AAAA of in-zone NS, MX and SRV targets go into the additional section."""
    targets = []
    for record in rrset.records:
        rd = record.rdata
        target = getattr(rd, "target", None) or getattr(rd, "label", None)
        if target is not None and record.rtype in (QTYPE.NS, QTYPE.MX, QTYPE.SRV):
            targets.append(str(target).lower())
    glue = tuple(
        r
        for t in dict.fromkeys(targets)
        for rtype in (QTYPE.A, QTYPE.AAAA)
        for r in zone.nodes.get(t, {}).get(rtype, RRset(())).records
    )
    return RRset(rrset.records, glue) if glue else rrset


def parse_zone(text: str, path: str, origin: str, require_soa: bool = True) -> StaticZone:
    state = _State(path=path, origin=origin)
    _parse_entries(state, text)
    zone = StaticZone(origin=origin, path=path)
    for line, record in state.records:
        _add(zone, line, record)
    if require_soa and zone.soa is None:
        raise ZoneError(f"no SOA record for {origin}", path, 1)
    for node in zone.nodes.values():
        for rtype, rrset in node.items():
            node[rtype] = _glue_for(zone, rrset)
    _add_ents(zone)
    return zone


def load_file(path: Path, registry_zone: str) -> StaticZone:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ZoneError(f"cannot read: {exc}", str(path), 0) from exc
    origin = _zone_origin(path, text)
    # The registry zone's own file may leave SOA and NS to the registry.
    return parse_zone(text, str(path), origin, require_soa=origin != registry_zone)


def load_dir(directory: str, registry_zone: str) -> dict[str, StaticZone]:
    """Every *.zone in directory by origin; a missing directory means no zones."""
    root = Path(directory)
    if not root.is_dir():
        return {}
    zones: dict[str, StaticZone] = {}
    for path in sorted(root.glob("*" + ZONE_SUFFIX)):
        zone = load_file(path, registry_zone)
        if zone.origin in zones:
            raise ZoneError(
                f"{zone.origin} is also defined in {zones[zone.origin].path}", str(path), 1
            )
        zones[zone.origin] = zone
    return zones


class ZoneSet:
    """The zones in service; ``reload`` swaps them only when every file parses."""

    def __init__(self, directory: str, registry_zone: str) -> None:
        self.directory = directory
        self.registry_zone = registry_zone
        self.zones: dict[str, StaticZone] = {}

    def reload(self) -> list[str]:
        self.zones = load_dir(self.directory, self.registry_zone)
        return sorted(self.zones)
