"""The answer cache and the hand encoder against the dnslib path, byte for byte, with
no sockets.

Servers on one registry: one answers through the answer cache (cache.py, filled by the
hand encoder), one through the hand encoder alone (no cache), one only through the
dnslib path. Rotation turns start at zero in all, so even rotated answers must be the
same bytes in the same order.
"""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from dns_helpers import ZONE, config, dns_server, example_registry, reduce
from ledger import Ledger

from jarvis_dns.dns import cache
from jarvis_dns.dns.query import classify
from jarvis_dns.dns.responder import LATER
from jarvis_dns.dns.server import DnsServer
from jarvis_dns.models import InstanceSpec, Status

Z = ZONE
QUESTIONS = [
    (f"_auth._tcp.{Z}", "SRV"),
    (f"_auth._tcp.{Z}", "PTR"),
    (f"1._auth._tcp.{Z}", "TXT"),
    (f"1._auth._tcp.{Z}", "SRV"),
    (f"auth.{Z}", "A"),
    (f"auth.{Z}", "AAAA"),
    (f"auth.{Z}", "TXT"),  # NODATA
    (f"2.auth.{Z}", "A"),
    (f"rr.{Z}", "A"),  # rotated
    (f"big.{Z}", "A"),  # rotated, truncated without EDNS
    (f"_big._tcp.{Z}", "SRV"),  # TC over UDP
    (f"_mid._tcp.{Z}", "SRV"),  # glue dropped or TC, by size
    (f"_blue._sub._auth._tcp.{Z}", "PTR"),
    (f"_services._dns-sd._udp.{Z}", "PTR"),
    (Z, "SOA"),
    (Z, "NS"),
    (Z, "ANY"),
    (f"nope.{Z}", "A"),  # NXDOMAIN
    ("example.com.", "A"),  # REFUSED: outside, no upstreams
    (Z, "AXFR"),  # REFUSED
]
EDNS = [
    {},
    {"use_edns": 0, "payload": 512},
    {"use_edns": 0, "payload": 1232},
    {"use_edns": 0, "payload": 4096},
    {"use_edns": 0, "payload": 100},
]


def registry() -> Ledger:
    reg = example_registry()
    for i in range(3):
        reg.register(InstanceSpec("rr", i, f"10.2.0.{i}", 80))
    for i in range(40):
        reg.register(InstanceSpec("big", i, f"10.1.0.{i}", 9000 + i))
    for i in range(20):
        reg.register(InstanceSpec("mid", i, f"10.5.0.{i}", 9000 + i))
    return reg


def pair(reg: Ledger, cached: bool = True, **overrides: object) -> tuple[DnsServer, DnsServer]:
    """(fast, dnslib) servers on one registry, subscribed as start() would; the fast one
    with the answer cache, or (cached=False) the hand encoder alone."""
    servers = (
        dns_server(reg, config(dns_fast_path=True, **overrides), cache=cached),
        dns_server(reg, config(dns_fast_path=False, **overrides)),
    )
    for server in servers:
        reg.subscribe(server.responder.changed)
    return servers


def cached(server: DnsServer, udp: bool = True) -> cache.AnswerCache:
    found = server.responder.udp_cache if udp else server.responder.tcp_cache
    assert found is not None
    return found


def spelled(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def query(name: str, rdtype: str, qid: int = 0x1234, rd: bool = True, **make: object) -> bytes:
    msg = dns.message.make_query(name, rdtype, **make)  # type: ignore[arg-type]
    msg.id = qid
    if not rd:
        msg.flags &= ~dns.flags.RD
    return msg.to_wire()


def fast_reply(server: DnsServer, data: bytes, udp: bool = True) -> bytes:
    reply = server.responder.answer(data, udp, later=True)
    assert isinstance(reply, bytes), "the cache or the hand encoder should have answered"
    return reply


def rotations(server: DnsServer, data: bytes, udp: bool) -> set[bytes]:
    """Every reply the dnslib path gives to a query, whatever the turn (ID left out)."""
    replies = set()
    for _ in range(41):  # more turns than the 40 addresses of big.Z
        reply = server.responder.respond(data, udp)
        assert isinstance(reply, bytes)
        replies.add(reply[2:])
    return replies


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "hand"])
@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
def test_every_question_is_byte_for_byte_a_dnslib_reply(udp: bool, cached: bool) -> None:
    fast, slow = pair(registry(), cached)
    rng = random.Random(6)
    for name, rdtype in QUESTIONS:
        for edns in EDNS:
            for rd in (True, False):
                for spelling in (name, spelled(name, rng), name.upper()):
                    data = query(spelling, rdtype, rng.randrange(65536), rd, **edns)
                    expected = rotations(slow, data, udp)
                    for _ in range(3):  # a miss, then hits, rotated or not
                        reply = fast_reply(fast, data, udp)
                        assert reply[:2] == data[:2] and reply[2:] in expected, (spelling, edns)


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "hand"])
def test_rotation_steps_like_the_dnslib_path(cached: bool) -> None:
    fast, slow = pair(registry(), cached)
    data = query(f"rr.{Z}", "A", use_edns=0)
    for _ in range(7):
        assert fast_reply(fast, data) == slow.responder.respond(data, True)


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "hand"])
@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
def test_both_paths_count_alike(udp: bool, cached: bool) -> None:
    fast, slow = pair(registry(), cached)
    for name, rdtype in QUESTIONS:
        for edns in EDNS[:3]:
            data = query(name, rdtype, **edns)
            for _ in range(2):
                assert fast.answer(data, udp) is not None
                assert slow.answer(data, udp) is not None
    counted, plain = fast.stats(), slow.stats()
    hits = counted.pop("cache_hits")
    assert plain.pop("cache_hits") == 0  # the dnslib path has no answer cache
    assert counted == plain
    # Each question is asked twice: the second time from the cache, when there is one.
    assert (hits > 0) == cached
    assert (counted["truncated"] > 0) == udp and counted["nxdomain"] > 0


def test_the_reply_carries_the_query_id_and_spelling() -> None:
    fast, _ = pair(registry())
    for qid, name in [(1, f"auth.{Z}"), (65535, f"AuTh.{Z}"), (7, f"AUTH.{Z.upper()}")]:
        data = query(name, "A", qid)
        reply = dns.message.from_wire(fast_reply(fast, data))
        assert reply.id == qid
        assert reply.question[0].name.to_text() == name
        assert reply.answer[0].name.to_text() == name
        assert fast_reply(fast, data)[12 : 12 + len(name) + 1] == data[12 : 12 + len(name) + 1]


def test_the_rd_bit_is_echoed() -> None:
    fast, _ = pair(registry())
    on = dns.message.from_wire(fast_reply(fast, query(f"auth.{Z}", "A", rd=True)))
    off = dns.message.from_wire(fast_reply(fast, query(f"auth.{Z}", "A", rd=False)))
    assert on.flags & dns.flags.RD and not off.flags & dns.flags.RD
    assert on.flags & dns.flags.AA and off.flags & dns.flags.AA


def test_a_records_rotate_through_every_address_whatever_the_spelling() -> None:
    fast, _ = pair(registry())
    rng = random.Random(0x20)
    names = [spelled(f"rr.{Z}", rng) for _ in range(6)]  # a 0x20 resolver's queries
    replies = [dns.message.from_wire(fast_reply(fast, query(n, "A"))) for n in names]
    leaders = [reduce(r).answer[0].split()[-1] for r in replies]
    assert len(set(leaders[:3])) == 3 and leaders[:3] == leaders[3:]


def test_many_addresses_rotate_through_a_ring_of_leaders() -> None:
    fast, _ = pair(registry())
    data = query(f"big.{Z}", "A", use_edns=0, payload=1232)
    replies = [dns.message.from_wire(fast_reply(fast, data)) for _ in range(2 * cache.RING)]
    leaders = [reduce(r).answer[0] for r in replies]
    assert len(set(leaders)) == cache.RING and leaders[: cache.RING] == leaders[cache.RING :]
    assert all(len(r.answer[0]) == 40 for r in replies)


def test_edns_size_decides_truncation_and_each_size_has_its_own_reply() -> None:
    fast, _ = pair(registry())
    name = f"_mid._tcp.{Z}"
    plain = dns.message.from_wire(fast_reply(fast, query(name, "SRV")))
    small = dns.message.from_wire(fast_reply(fast, query(name, "SRV", use_edns=0, payload=512)))
    large = dns.message.from_wire(fast_reply(fast, query(name, "SRV", use_edns=0, payload=1232)))
    assert plain.flags & dns.flags.TC and plain.edns == -1 and plain.answer == []
    assert small.flags & dns.flags.TC and small.edns == 0 and small.answer == []
    assert not large.flags & dns.flags.TC and len(large.answer[0]) == 20
    assert large.additional == []  # glue dropped to fit 1232 bytes, no TC
    tcp = dns.message.from_wire(fast_reply(fast, query(name, "SRV"), udp=False))
    assert len(tcp.answer[0]) == 20 and len(tcp.additional) == 20
    assert fast.stats()["truncated"] == 2


@pytest.mark.parametrize(
    "change",
    ["register", "busy", "dead", "maintenance", "deregister", "heartbeat_back"],
)
def test_the_very_next_answer_after_a_change_is_fresh(change: str) -> None:
    reg = registry()
    reg.set_status("rr", 2, status=Status.DEAD)
    fast, slow = pair(reg)
    questions = [
        query(f"_rr._tcp.{Z}", "SRV"),
        query(f"rr.{Z}", "A"),
        query(f"0._rr._tcp.{Z}", "TXT"),
        query(f"nope.{Z}", "A"),  # the SOA serial in authority moves with the index
        query(Z, "SOA"),
        query(f"_auth._tcp.{Z}", "SRV"),  # another service: kept
    ]
    for data in questions:  # cached now: the second answer is a hit
        fast_reply(fast, data)
        fast_reply(fast, data)
    assert len(cached(fast)) == len(questions)
    if change == "register":
        reg.register(InstanceSpec("rr", 9, "10.2.0.9", 80))
    elif change == "busy":
        reg.set_status("rr", 0, busy=True)
    elif change == "dead":
        reg.set_status("rr", 0, status=Status.DEAD)
    elif change == "maintenance":
        reg.set_status("rr", 0, status=Status.MAINTENANCE)
    elif change == "deregister":
        reg.deregister("rr", 0)
    else:
        reg.heartbeat("rr", 2)
    # Only rr's three names are dropped; the negative answer and the SOA keep their
    # place and get the new serial patched in.
    assert len(cached(fast)) == len(questions) - 3
    for data in questions:
        assert fast_reply(fast, data) == slow.responder.respond(data, True)


def test_a_zone_reload_empties_the_cache(tmp_path: object) -> None:
    fast, _ = pair(registry())
    fast_reply(fast, query(f"auth.{Z}", "A"))
    assert len(cached(fast)) == 1
    fast.reload_zones()
    assert len(cached(fast)) == 0


def _with_counts(data: bytes, qd: int, an: int, ns: int, ar: int) -> bytes:
    return data[:4] + struct.pack("!HHHH", qd, an, ns, ar) + data[12:]


def _fallbacks() -> dict[str, bytes]:
    plain = query(f"auth.{Z}", "A")
    edns = query(f"auth.{Z}", "A", use_edns=0)
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")
    notify = dns.message.make_query(Z, "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    response = dns.message.make_response(dns.message.make_query(f"auth.{Z}", "A"))
    pointer = plain[:12] + b"\x04auth\xc0\x0c" + plain[-4:]  # compression in the question
    return {
        "other opcode": notify.to_wire(),
        "no question": _with_counts(plain, 0, 0, 0, 0)[:12],
        "two questions": _with_counts(plain + plain[12:], 2, 0, 0, 0),
        "an answer record": _with_counts(plain, 1, 1, 0, 0),
        "an authority record": _with_counts(plain, 1, 0, 1, 0),
        "EDNS option": query(f"auth.{Z}", "A", use_edns=0, options=[cookie]),
        "EDNS version 1": query(f"auth.{Z}", "A", use_edns=1),
        "OPT not at the root": edns[:-11] + b"\x01a" + edns[-10:],
        "two OPTs": _with_counts(edns + edns[-11:], 1, 0, 0, 2),
        "trailing junk": plain + b"\x00",
        "cut short": plain[:-1],
        "header only": plain[:12],
        "a response": response.to_wire(),
        "compression pointer": pointer,
        "label too long": plain[:12] + b"\x40" + b"a" * 64 + b"\x00" + plain[-4:],
        "empty": b"",
    }


@pytest.mark.parametrize("case", sorted(_fallbacks()))
def test_unusual_queries_go_the_dnslib_way(case: str) -> None:
    data = _fallbacks()[case]
    fast, slow = pair(registry())
    assert classify(data) is None
    assert fast.responder.answer(data, True, later=True) is LATER
    assert fast.responder.answer(data, False, later=True) is LATER
    assert fast.answer(data, udp=True) == slow.answer(data, udp=True)
    assert fast.stats() == slow.stats()  # counted once, by the dnslib path


def test_forwarded_names_go_the_dnslib_way_every_time() -> None:
    fast, _ = pair(Ledger(clock=lambda: 0.0), upstreams=["127.0.0.1:1"])
    data = query("example.com.", "A")
    for _ in range(2):
        assert fast.responder.answer(data, True, later=True) is LATER
    assert fast.stats()["queries_udp"] == 0  # nothing counted until the dnslib path answers
    q = classify(data)
    assert q is not None and cached(fast).declined(q.key)


def test_mutated_packets_either_fall_back_or_match_the_dnslib_path() -> None:
    rng = random.Random(20240607)
    fast, slow = pair(example_registry())
    seeds = [query(n, t, **e) for n, t in QUESTIONS[:8] for e in EDNS[:3]]
    answered = 0
    for _ in range(5_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        mine = fast.responder.answer(bytes(data), True, later=True)
        if isinstance(mine, bytes):
            answered += 1
            assert mine == slow.responder.respond(bytes(data), True), bytes(data)
    assert answered > 500  # case flips, IDs, flags and types still take the fast path


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "MAX_QUESTIONS", 10)
    monkeypatch.setattr(cache, "MAX_SPELLINGS", 10)
    fast, _ = pair(registry())
    for i in range(25):
        reply = dns.message.from_wire(fast_reply(fast, query(f"n{i}.{Z}", "A")))
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert len(cached(fast)) <= 10


def test_the_cache_bytes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "MAX_BYTES", 20_000)
    fast, slow = pair(registry())
    # EDNS sizes varied to make many entries of a rotated 40-address answer.
    for size in range(1200, 1232):
        data = query(f"big.{Z}", "A", use_edns=0, payload=size)
        assert fast_reply(fast, data)[2:] in rotations(slow, data, True)
        assert cached(fast)._bytes <= 20_000
    assert len(cached(fast)) < 10
