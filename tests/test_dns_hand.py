"""The hand-encoded miss path (dns/encode.py) on generated fleets, per-service cache
invalidation, and --udp-answer-limit; no sockets.

The hand encoder must give the dnslib path's bytes for every row of the naming table,
positive and negative, with and without EDNS, over UDP and TCP, whatever the fleet:
hypothesis makes the fleets.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
from dns_helpers import ZONE, config, dns_server, example_registry, reduce
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger import Ledger

from jarvis_dns.dns.cache import AnswerCache
from jarvis_dns.dns.records import LIMITED_CYCLE
from jarvis_dns.dns.responder import LATER
from jarvis_dns.dns.server import DnsServer
from jarvis_dns.models import InstanceSpec, Status

Z = ZONE
EDNS: list[dict[str, int]] = [{}, {"use_edns": 0, "payload": 1232}, {"use_edns": 0, "payload": 700}]
TYPES = ["SRV", "PTR", "A", "AAAA", "TXT", "SOA", "NS", "ANY", "MX"]

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["localhost", "edge.example.net", "db-1.internal"]),
)
tags = st.lists(st.sampled_from(["blue", "Green", "oauth", "eu"]), max_size=3)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "tags": tags,
        "capabilities": st.one_of(
            tags, st.dictionaries(st.sampled_from(["oauth", "gpu"]), st.booleans())
        ),
        "version": st.text(alphabet="0123456789.", max_size=5),
        "note": st.text(max_size=40),
        "n": st.integers(),
    },
)
instances = st.tuples(
    st.sampled_from(["auth", "web", "ns", "big-svc"]),
    st.one_of(st.integers(0, 300), labels),
    hosts,
    st.integers(1, 65535),
    st.integers(0, 100),
    st.booleans(),
    st.sampled_from([Status.ACTIVE, Status.ACTIVE, Status.DEAD, Status.MAINTENANCE]),
    metadata,
)


def fleet_of(rows: list[tuple]) -> Ledger:  # type: ignore[type-arg]
    reg = Ledger(clock=lambda: 1_700_000_000.0)
    for svc, iid, host, port, weight, busy, status, meta in rows:
        spec = InstanceSpec(svc, iid, host, port, metadata=meta, weight=weight, busy=busy)
        reg.register(spec)
        if status is not Status.ACTIVE:
            reg.set_status(svc, iid, status=status)
    return reg


def names_of(reg: Ledger) -> list[str]:
    """Every row of the naming table for this fleet, and some names no row has."""
    out = [Z, f"ns.{Z}", f"_tcp.{Z}", f"_udp.{Z}", f"_services._dns-sd._udp.{Z}", f"nope.{Z}"]
    for svc in ["auth", "web", "ns", "big-svc", "gone"]:
        out += [f"_{svc}._tcp.{Z}", f"{svc}.{Z}", f"_sub._{svc}._tcp.{Z}"]
        out += [f"_{tag}._sub._{svc}._tcp.{Z}" for tag in ("blue", "green", "oauth", "gpu")]
        for inst in reg.view.instances(svc)[:4]:
            out += [f"{inst.key}._{svc}._tcp.{Z}", f"{inst.key}.{svc}.{Z}"]
    return out


def query(name: str, rdtype: str, **edns: int) -> bytes:
    msg = dns.message.make_query(name, rdtype, **edns)  # type: ignore[arg-type]
    msg.id = 0x4242
    return msg.to_wire()


def servers(reg: Ledger, **kwargs: object) -> tuple[DnsServer, DnsServer]:
    """(hand encoder without cache, dnslib path) on one fleet."""
    hand = dns_server(reg, config(dns_fast_path=True), cache=False, **kwargs)  # type: ignore[arg-type]
    slow = dns_server(reg, config(dns_fast_path=False), **kwargs)  # type: ignore[arg-type]
    for server in (hand, slow):
        reg.subscribe(server.responder.changed)
    return hand, slow


def hand_reply(server: DnsServer, data: bytes, udp: bool = True) -> bytes:
    reply = server.responder.answer(data, udp, later=True)
    assert isinstance(reply, bytes), "the hand encoder should have answered"
    return reply


def udp_cache(server: DnsServer) -> AnswerCache:
    found = server.responder.udp_cache
    assert found is not None
    return found


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instances, min_size=0, max_size=30))
def test_the_hand_encoder_gives_the_dnslib_bytes_for_every_row(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    reg = fleet_of(rows)
    hand, slow = servers(reg)
    for name in names_of(reg):
        for rdtype in TYPES:
            for edns in EDNS:
                for udp in (True, False):
                    data = query(name, rdtype, **edns)
                    # Turns start at zero in both, so rotated answers compare too.
                    hand.responder.invalidate()
                    slow.responder.invalidate()
                    for _ in range(2):
                        mine = hand_reply(hand, data, udp)
                        assert mine == slow.responder.respond(data, udp), (name, rdtype, edns)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instances, min_size=1, max_size=40), st.integers(1, 6))
def test_limited_udp_answers_are_alike_on_both_paths(rows: list[tuple], limit: int) -> None:  # type: ignore[type-arg]
    reg = fleet_of(rows)
    hand, slow = servers(reg, udp_limit=limit)
    for svc in ["auth", "web", "big-svc"]:
        for name, rdtype in [
            (f"_{svc}._tcp.{Z}", "SRV"),
            (f"{svc}.{Z}", "A"),
            (f"_{svc}._tcp.{Z}", "PTR"),
        ]:
            data = query(name, rdtype, use_edns=0, payload=1232)
            hand.responder.invalidate()
            slow.responder.invalidate()
            for _ in range(3):
                assert hand_reply(hand, data) == slow.responder.respond(data, True)


def _fleet(n: int, services: int = 3) -> Ledger:
    reg = Ledger(clock=lambda: 0.0)
    for s in range(services):
        for i in range(n):
            reg.register(InstanceSpec(f"s{s}", i, f"10.{s}.{i // 256}.{i % 256}", 8000 + i))
    return reg


def test_a_change_to_one_service_keeps_the_others_cached() -> None:
    reg = _fleet(5)
    fast = dns_server(reg, config(dns_fast_path=True), cache=True)
    _, slow = servers(reg)
    reg.subscribe(fast.responder.changed)
    questions = [query(f"_s{s}._tcp.{Z}", "SRV") for s in range(3)] + [
        query(f"s{s}.{Z}", "A") for s in range(3)
    ]
    for data in questions:
        hand_reply(fast, data)
    assert len(udp_cache(fast)) == 6
    for _ in range(20):  # a busy service: flips all the time
        reg.set_status("s0", 1, busy=True)
        reg.set_status("s0", 1, busy=False)
    assert len(udp_cache(fast)) == 4  # s0's SRV and A went; s1's and s2's stayed
    for data in questions:  # fresh where it changed, same records (rotation aside)
        mine = reduce(dns.message.from_wire(hand_reply(fast, data)))
        wire = slow.responder.respond(data, True)
        assert isinstance(wire, bytes)
        theirs = reduce(dns.message.from_wire(wire))
        assert sorted(mine.answer) == sorted(theirs.answer)
        assert mine.additional == theirs.additional


def test_a_service_appearing_or_going_refreshes_the_dns_sd_listing() -> None:
    reg = _fleet(2)
    fast = dns_server(reg, config(dns_fast_path=True), cache=True)
    reg.subscribe(fast.responder.changed)
    browse = query(f"_services._dns-sd._udp.{Z}", "PTR")
    tcp = query(f"_tcp.{Z}", "A")

    def listed() -> list[str]:
        return [
            r.split()[-1] for r in reduce(dns.message.from_wire(hand_reply(fast, browse))).answer
        ]

    assert listed() == [f"_s{s}._tcp.{Z}" for s in range(3)]
    hand_reply(fast, tcp)
    reg.set_status("s1", 0, busy=True)  # s1 stays live: the listing is kept
    assert len(udp_cache(fast)) == 2
    reg.set_status("s1", 0, status=Status.DEAD)
    reg.set_status("s1", 1, status=Status.MAINTENANCE)  # s1 has nothing live: it goes
    assert listed() == [f"_s0._tcp.{Z}", f"_s2._tcp.{Z}"]
    reg.register(InstanceSpec("new", 1, "10.9.0.1", 80))
    assert sorted(listed()) == [f"_new._tcp.{Z}", f"_s0._tcp.{Z}", f"_s2._tcp.{Z}"]
    for svc in ["s0", "s2", "new"]:
        for inst in reg.view.instances(svc):
            reg.deregister(svc, inst.instance_id)
    reply = dns.message.from_wire(hand_reply(fast, tcp))
    assert reply.rcode() == dns.rcode.NXDOMAIN  # no live service: _tcp.Z is gone


def test_cached_negative_answers_take_the_new_serial_without_a_flush() -> None:
    reg = _fleet(2)
    fast = dns_server(reg, config(dns_fast_path=True), cache=True)
    _, slow = servers(reg)
    reg.subscribe(fast.responder.changed)
    negatives = [
        query(f"nope.{Z}", "A"),
        query(f"x.y.z.{Z}", "A"),
        query(f"s0.{Z}", "TXT"),
        query(Z, "SOA"),
    ]
    for data in negatives:
        hand_reply(fast, data)
    for i in range(5):
        reg.set_status("s1", i % 2, busy=bool(i % 2))
        for data in negatives:
            mine = dns.message.from_wire(hand_reply(fast, data))
            serial = (mine.authority or mine.answer)[0][0].serial
            assert serial == reg.index
            assert hand_reply(fast, data) == slow.responder.respond(data, True)
    assert len(udp_cache(fast)) == len(negatives)  # patched in place, never dropped


def test_udp_answer_limit_answers_at_most_n_idle_first_and_tcp_everything() -> None:
    reg = _fleet(40, services=1)
    for i in range(0, 40, 2):
        reg.set_status("s0", i, busy=True)  # 20 busy, 20 idle
    for path in ("fast", "hand", "dnslib"):
        server = dns_server(
            reg, config(dns_fast_path=path != "dnslib"), cache=path == "fast", udp_limit=5
        )
        srv = query(f"_s0._tcp.{Z}", "SRV")
        seen: set[str] = set()
        for _ in range(2 * LIMITED_CYCLE):
            wire = server.answer(srv, udp=True)
            assert isinstance(wire, bytes)
            reply = dns.message.from_wire(wire)
            assert not reply.flags & dns.flags.TC
            records = reduce(reply).answer
            assert len(records) == 5 and all(" SRV 0 " in r for r in records), path  # idle only
            assert len(reduce(reply).additional) == 5  # and their glue
            seen.update(records)
        assert len(seen) > 5  # shuffled per answer: others get their turn
        whole = server.answer(srv, udp=False)
        assert isinstance(whole, bytes)
        assert len(reduce(dns.message.from_wire(whole)).answer) == 40
        a = server.answer(query(f"s0.{Z}", "A"), udp=True)
        assert isinstance(a, bytes) and len(reduce(dns.message.from_wire(a)).answer) == 5


def test_without_a_limit_big_answers_truncate_as_before() -> None:
    reg = _fleet(40, services=1)
    server = dns_server(reg, config(dns_fast_path=True), cache=True)
    wire = server.answer(query(f"_s0._tcp.{Z}", "SRV"), udp=True)
    assert isinstance(wire, bytes)
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC and reply.answer == []


def test_names_in_zone_files_go_the_dnslib_way_and_are_cached(tmp_path: object) -> None:
    from pathlib import Path

    zones = Path(str(tmp_path)) / "zones"
    zones.mkdir()
    (zones / "corp.zone").write_text(
        "$ORIGIN corp.internal.\n$TTL 120\n"
        "@ IN SOA ns.corp.internal. hostmaster.corp.internal. 1 60 30 86400 60\n"
        "@ IN NS ns.corp.internal.\nns IN A 192.0.2.1\napp IN A 192.0.2.10\n"
    )
    reg = example_registry()
    for cache in (True, False):
        server = dns_server(reg, config(tmp_path, dns_fast_path=True), cache=cache)
        server.reload_zones()
        data = query("APP.corp.internal.", "A")
        reply = server.responder.answer(data, True, later=True)
        if cache:  # packed by dnslib once, then a hit
            assert isinstance(reply, bytes) and len(udp_cache(server)) == 1
            assert server.responder.answer(data, True, later=True) == reply
        else:  # the hand encoder declines it: the backlog's dnslib path answers
            assert reply is LATER
        answered = server.answer(data, udp=True)
        assert isinstance(answered, bytes)
        assert reduce(dns.message.from_wire(answered)).answer == [
            "APP.corp.internal. 120 A 192.0.2.10"
        ]
