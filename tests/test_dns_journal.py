"""The registry zone as transfers carry it (content.py, journal.py, serial.py): no I/O.

What a secondary holds after a transfer must be what jarvis-dns answers, name by name;
and every IXFR difference, added to the zone the secondary held, must give the zone as
it is now, however the changes came (busy flips, shared addresses, a service called
``ns``, zone-file names the registry shadows).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest
from dns_helpers import example_registry
from ledger import Ledger

from jarvis_dns.config import Config
from jarvis_dns.dns import build
from jarvis_dns.dns.content import Record, ZoneContent, from_dnslib
from jarvis_dns.dns.encode import labels_of
from jarvis_dns.dns.journal import Delta, Journal
from jarvis_dns.dns.responder import Responder
from jarvis_dns.dns.serial import (
    SERIAL_MODULUS,
    serial_add,
    serial_gt,
    serial_lt,
    serial_of,
)
from jarvis_dns.dns.xfr import Transfers, soa_serial, with_serial
from jarvis_dns.dns.zones import ZoneSet
from jarvis_dns.models import InstanceSpec, Status

ZONE = "jarvis.internal."
ZONE_FILE = """$ORIGIN jarvis.internal.
$TTL 300
@        IN SOA  ns1.example.net. admin.example.net. 1 3600 600 86400 60
@        IN NS   ns1.example.net.
@        IN MX   10 mail.example.net.
gateway  IN A    192.0.2.1
web      IN A    192.0.2.80      ; shown only while the service web has no live instance
7.auth   IN TXT  "static"        ; shown only while auth 7 is not live
www      IN CNAME gateway
"""


def responder(reg: Ledger, tmp_path: Path | None = None) -> Responder:
    zones_dir = str(tmp_path) if tmp_path is not None else "/nonexistent"
    config = Config(zones_dir=zones_dir)
    built = build(reg.discovery, ZoneSet(zones_dir, ZONE), config)
    built.reload_zones()
    return built


def with_zone_file(tmp_path: Path) -> Path:
    (tmp_path / "jarvis.internal.zone").write_text(ZONE_FILE)
    return tmp_path


def listed(content: ZoneContent) -> set[Record]:
    snapshot = content.snapshot()
    return {snapshot.soa, *content.listing(snapshot)}


def answered(resp: Responder, names_: set[str]) -> set[Record]:
    """Every record the answers hold at these names."""
    found = set()
    for name in names_:
        node = resp.authority.rrsets(name) or {}
        found.update(from_dnslib(rr) for rrset in node.values() for rr in rrset.records)
    return found


def owner_text(record: Record) -> str:
    return ".".join(label.decode() for label in record[0]) + "."


def candidate_names(reg: Ledger) -> set[str]:
    """Names an answer might come from: every instance's, live or not, and the fixed ones."""
    found = {ZONE, f"ns.{ZONE}", f"_services._dns-sd._udp.{ZONE}", f"gateway.{ZONE}"}
    found |= {f"www.{ZONE}", f"web.{ZONE}", f"7.auth.{ZONE}", f"_tcp.{ZONE}"}
    for svc in reg.view.service_types():
        found |= {f"{svc}.{ZONE}", f"_{svc}._tcp.{ZONE}", f"_sub._{svc}._tcp.{ZONE}"}
        for inst in reg.view.instances(svc):
            found |= {f"{inst.key}.{svc}.{ZONE}", f"{inst.key}._{svc}._tcp.{ZONE}"}
            for tag in ("blue", "green", "eu", "oauth", "gpu"):
                found.add(f"_{tag}._sub._{svc}._tcp.{ZONE}")
    return found


def assert_agrees(reg: Ledger, resp: Responder, content: ZoneContent) -> None:
    zone = listed(content)
    by_owner: dict[str, set[Record]] = defaultdict(set)
    for record in zone:
        by_owner[owner_text(record)].add(record)
    assert answered(resp, candidate_names(reg) | set(by_owner)) == zone
    for owner, records in by_owner.items():
        assert answered(resp, {owner}) == records, owner


def fleet() -> Ledger:
    reg = example_registry()
    reg.register(InstanceSpec("ns", 1, "10.9.0.1", 53))  # the registry wins ns.Z
    reg.register(InstanceSpec("dup", 1, "10.8.0.1", 80))
    reg.register(InstanceSpec("dup", 2, "10.8.0.1", 81, busy=True))  # one address, twice
    reg.register(InstanceSpec("odd", 1, "10.7.0.1", 80, metadata={"tags": ["a.b", "x" * 70]}))
    return reg


def test_the_listing_is_what_the_answers_hold(tmp_path: Path) -> None:
    reg = fleet()
    resp = responder(reg, with_zone_file(tmp_path))
    assert_agrees(reg, resp, ZoneContent(resp.authority))


def test_without_a_zone_file_ns_has_the_listening_address() -> None:
    reg = example_registry()
    resp = responder(reg)
    resp.set_ns_addresses(["127.0.0.1", "::1"])
    content = ZoneContent(resp.authority)
    assert_agrees(reg, resp, content)
    ns = labels_of(f"ns.{ZONE}")
    assert {r[1] for r in listed(content) if r[0] == ns} == {1, 28}  # A and AAAA


def test_names_a_query_cannot_reach_are_left_out() -> None:
    reg = fleet()
    content = ZoneContent(responder(reg).authority)
    owners = {owner_text(r) for r in listed(content)}
    assert not any("a.b" in o or "x" * 70 in o for o in owners)


# -- the journal: every difference applied to the old zone gives the new one


def churn(reg: Ledger, rng: random.Random, steps: int) -> None:
    """Registrations, updates, busy flips, status changes and removals, hosts shared."""
    for _ in range(steps):
        svc = rng.choice(["auth", "web", "ns", "dup", "gpu"])
        iid = rng.randrange(8)
        host = rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "box.example.net"])
        exists = reg.find(svc, iid) is not None
        roll = rng.random()
        if not exists or roll < 0.3:
            tags = rng.choice([[], ["gpu"], ["gpu", "eu"]])
            busy = rng.random() < 0.3
            metadata = {"tags": tags, "n": rng.randrange(3)}
            reg.register(InstanceSpec(svc, iid, host, 80 + iid, metadata, busy=busy))
        elif roll < 0.6:
            reg.set_status(svc, iid, busy=rng.random() < 0.5)
        elif roll < 0.8:
            status = rng.choice([Status.ACTIVE, Status.DEAD, Status.MAINTENANCE])
            reg.set_status(svc, iid, status=status)
        else:
            reg.deregister(svc, iid)


def applied(zone: set[Record], delta: Delta) -> set[Record]:
    assert delta.removed <= zone and not (delta.added & zone)
    return (zone - delta.removed) | delta.added


@pytest.mark.parametrize("seed", range(6))
def test_each_difference_turns_the_old_zone_into_the_new(seed: int, tmp_path: Path) -> None:
    reg = example_registry()
    resp = responder(reg, with_zone_file(tmp_path))
    content = ZoneContent(resp.authority)
    transfers = Transfers(content, 10_000, dict)
    reg.subscribe(transfers.changed)
    rng = random.Random(seed)
    history = {reg.index: unsoa(listed(content))}
    for _ in range(120):
        before = reg.index
        churn(reg, rng, 1)
        now = unsoa(listed(content))
        if reg.index != before:
            delta = transfers.journal.since(serial_of(before))
            assert delta is not None
            assert applied(history[before], delta) == now
            history[reg.index] = now
    for index, zone in history.items():  # condensed: from any earlier version at once
        delta = transfers.journal.since(serial_of(index))
        assert delta is not None
        assert applied(zone, delta) == now
    assert_agrees(reg, resp, content)


def unsoa(zone: set[Record]) -> set[Record]:
    """The zone but its SOA (whose serial every change moves)."""
    return {r for r in zone if r[1] != 6}


def test_the_journal_reaches_back_only_as_far_as_it_keeps() -> None:
    journal = Journal(size=3, base=10)
    for index in range(11, 16):
        journal.record(index, Delta(added={((b"x",), 1, 5, bytes([index]))}))
    assert journal.base == 12 and journal.index == 15 and len(journal) == 3
    assert journal.since(serial_of(11)) is None  # dropped: the caller sends the whole zone
    delta = journal.since(serial_of(12))
    assert delta is not None and {r[3] for r in delta.added} == {b"\x0d", b"\x0e", b"\x0f"}
    assert journal.since(serial_of(15)) == Delta()  # up to date: nothing to send
    journal.restart(20)
    assert journal.since(serial_of(15)) is None and journal.since(serial_of(20)) == Delta()


def test_a_delta_composes_in_order() -> None:
    a, b = ((b"a",), 1, 5, b"1"), ((b"b",), 1, 5, b"2")
    delta = Delta()
    delta.add([a])
    delta.remove([a])  # added, then removed again: neither
    delta.remove([b])
    delta.add([b])  # removed, then back: neither
    assert not delta
    later = Delta(removed={a})
    first = Delta(added={a})
    first.then(later)
    assert not first


def test_the_journal_finds_a_serial_across_the_wrap() -> None:
    base = SERIAL_MODULUS - 2
    journal = Journal(size=10, base=base)
    for index in range(base + 1, base + 5):
        journal.record(index, Delta(added={((b"x",), 1, 5, index.to_bytes(8, "big"))}))
    delta = journal.since(SERIAL_MODULUS - 1)  # the serial before 0, 1, 2
    assert delta is not None and len(delta.added) == 3


# -- RFC 1982


@pytest.mark.parametrize(
    ("a", "b"),
    [(0, 1), (1, 2), (SERIAL_MODULUS - 1, 0), (SERIAL_MODULUS - 5, 10), (0, 2**31 - 1)],
)
def test_serial_arithmetic_wraps(a: int, b: int) -> None:
    assert serial_lt(a, b) and serial_gt(b, a)
    assert not serial_lt(b, a) and not serial_gt(a, b)


def test_serials_half_the_circle_apart_are_not_ordered() -> None:
    assert not serial_lt(0, 2**31) and not serial_gt(0, 2**31)  # RFC 1982 3.2: undefined


def test_serial_addition() -> None:
    assert serial_add(SERIAL_MODULUS - 1, 1) == 0
    assert serial_add(5, 2**31 - 1) == (5 + 2**31 - 1) % SERIAL_MODULUS
    with pytest.raises(ValueError):
        serial_add(0, 2**31)


def test_serial_of_an_index_past_four_billion() -> None:
    assert serial_of(SERIAL_MODULUS + 7) == 7


def test_soa_serial_is_rewritten_in_place() -> None:
    reg = example_registry()
    soa = ZoneContent(responder(reg).authority).soa()
    assert soa_serial(soa) == reg.index
    old = with_serial(soa, 3)
    assert soa_serial(old) == 3 and old[3][:-20] == soa[3][:-20] and old[3][-16:] == soa[3][-16:]
