"""Message-level rules, straight through the responder (no sockets): EDNS(0), sizes,
opcodes, question counts, garbage, case, rotation, freshness."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from dns_helpers import (
    ZONE,
    config,
    dns_path,  # noqa: F401  (autouse: every path)
    dns_server,
    example_registry,
    reduce,
)
from ledger import Ledger

from jarvis_dns.dns.responder import Forward
from jarvis_dns.dns.server import DnsServer
from jarvis_dns.models import InstanceSpec, Status


def _server(reg: Ledger | None = None, **overrides: object) -> DnsServer:
    server = dns_server(reg or example_registry(), config(**overrides))
    server._events.subscribe(server.responder.changed)  # start() does this
    return server


def _ask(server: DnsServer, query: dns.message.Message, udp: bool = True) -> dns.message.Message:
    reply = server.answer(query.to_wire(), udp=udp)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def _big_registry(n: int = 200) -> Ledger:
    reg = Ledger(clock=lambda: 0.0)
    for i in range(n):
        reg.register(InstanceSpec("big", i, f"10.1.{i // 256}.{i % 256}", 9000 + i))
    return reg


def test_without_edns_udp_answers_fit_512_bytes() -> None:
    server = _server(_big_registry())
    reply = _ask(server, dns.message.make_query(f"_big._tcp.{ZONE}", "SRV"))
    assert reply.flags & dns.flags.TC
    assert reply.answer == [] and reply.edns == -1
    assert server.stats()["truncated"] == 1


def test_edns_size_is_honoured_up_to_the_configured_limit() -> None:
    server = _server(_big_registry(20))
    query = dns.message.make_query(f"_big._tcp.{ZONE}", "SRV", use_edns=0, payload=4096)
    wire = server.answer(query.to_wire(), udp=True)
    assert isinstance(wire, bytes) and 512 < len(wire) <= 1232
    reply = dns.message.from_wire(wire)
    assert reply.edns == 0 and reply.payload == 1232  # OPT echoed with our own limit
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 20


def test_glue_is_dropped_before_truncating() -> None:
    server = _server(_big_registry(20))
    query = dns.message.make_query(f"_big._tcp.{ZONE}", "SRV", use_edns=0, payload=1232)
    reply = _ask(server, query)
    assert len(reply.answer[0]) == 20 and not reply.flags & dns.flags.TC
    assert reply.additional == []  # the 20 A records did not fit beside the SRVs


def test_small_edns_size_counts_as_512() -> None:
    server = _server(_big_registry(5))
    query = dns.message.make_query(f"_big._tcp.{ZONE}", "SRV", use_edns=0, payload=100)
    reply = _ask(server, query)
    assert len(reply.answer[0]) == 5 and not reply.flags & dns.flags.TC


def test_tcp_carries_200_instances() -> None:
    server = _server(_big_registry())
    query = dns.message.make_query(f"_big._tcp.{ZONE}", "SRV", use_edns=0, payload=1232)
    reply = _ask(server, query, udp=False)
    assert len(reply.answer[0]) == 200 and len(reply.additional) == 200


def test_badvers_for_edns_version_above_zero() -> None:
    server = _server()
    reply = _ask(server, dns.message.make_query(f"auth.{ZONE}", "A", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0
    assert server.stats()["badvers"] == 1


def test_two_opt_records_are_formerr() -> None:
    wire = dns.message.make_query(f"auth.{ZONE}", "A", use_edns=0).to_wire()
    opt = wire[-11:]  # root name, type 41, class, ttl, rdlength 0
    doubled = wire[:10] + struct.pack("!H", 2) + wire[12:] + opt
    reply = dns.message.from_wire(_server().answer(doubled, udp=True))  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    "opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE]
)
def test_other_opcodes_are_notimp(opcode: int) -> None:
    query = dns.message.make_query(ZONE, "SOA")  # SOA: UPDATE's zone section needs it
    query.set_opcode(opcode)
    server = _server()
    reply = _ask(server, query)
    assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == opcode
    assert server.stats()["notimp"] == 1


@pytest.mark.parametrize("count", [0, 2])
def test_qdcount_other_than_one_is_formerr(count: int) -> None:
    one = dns.message.make_query(f"auth.{ZONE}", "A").to_wire()
    question = one[12:]
    wire = one[:4] + struct.pack("!H", count) + one[6:12] + question * count
    server = _server()
    reply = dns.message.from_wire(server.answer(wire, udp=True))  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.FORMERR
    assert server.stats()["formerr"] == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # question promised, missing
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # self loop
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ab",  # label runs off the end
        dns.message.make_response(dns.message.make_query("a.", "A")).to_wire(),  # a response
    ],
)
def test_garbage_is_dropped_and_counted(garbage: bytes) -> None:
    server = _server()
    assert server.answer(garbage, udp=True) is None
    assert server.stats()["dropped"] == 1


def test_question_case_is_echoed() -> None:
    name = "AuTh.JaRvIs.InTeRnAl."
    wire = server_reply = _server().answer(dns.message.make_query(name, "A").to_wire(), udp=True)
    assert isinstance(wire, bytes)
    reply = dns.message.from_wire(server_reply)  # type: ignore[arg-type]
    assert reply.question[0].name.to_text() == name
    assert reply.answer[0].name.to_text() == name
    assert b"AuTh" in wire


def test_zone_transfers_and_other_classes_are_refused() -> None:
    server = _server()
    assert _ask(server, dns.message.make_query(ZONE, "AXFR")).rcode() == dns.rcode.REFUSED
    chaos = dns.message.make_query("version.bind.", "TXT", rdclass="CH")
    assert _ask(server, chaos).rcode() == dns.rcode.REFUSED


def test_a_records_rotate_per_answer() -> None:
    reg = Ledger(clock=lambda: 0.0)
    for i in range(3):
        reg.register(InstanceSpec("rr", i, f"10.2.0.{i}", 80))
    server = _server(reg)
    firsts = [
        reduce(_ask(server, dns.message.make_query(f"rr.{ZONE}", "A"))).answer[0] for _ in range(3)
    ]
    assert sorted(firsts) == sorted(set(firsts))  # each answer led by another address


def test_a_records_fall_back_to_busy_when_none_is_idle() -> None:
    reg = Ledger(clock=lambda: 0.0)
    reg.register(InstanceSpec("b", 1, "10.3.0.1", 80, busy=True))
    reply = reduce(_ask(_server(reg), dns.message.make_query(f"b.{ZONE}", "A")))
    assert reply.answer == [f"b.{ZONE} 5 A 10.3.0.1"]


def test_every_change_shows_in_the_next_answer() -> None:
    reg = Ledger(clock=lambda: 0.0)
    server = _server(reg)
    srv = dns.message.make_query(f"_f._tcp.{ZONE}", "SRV")

    def answer() -> list[str]:
        return reduce(_ask(server, srv)).answer

    assert answer() == []
    reg.register(InstanceSpec("f", 1, "10.4.0.1", 80))
    assert answer() == [f"_f._tcp.{ZONE} 5 SRV 0 100 80 1.f.{ZONE}"]
    reg.set_status("f", 1, busy=True)
    assert answer() == [f"_f._tcp.{ZONE} 5 SRV 10 1 80 1.f.{ZONE}"]
    reg.set_status("f", 1, status=Status.DEAD)
    assert answer() == []
    reg.heartbeat("f", 1)  # back from the dead
    assert len(answer()) == 1
    reg.deregister("f", 1)
    assert answer() == []


def test_soa_serial_follows_the_change_index() -> None:
    reg = Ledger(clock=lambda: 0.0)
    reg.view.index = 2**32 + 7
    reply = _ask(_server(reg), dns.message.make_query(ZONE, "SOA"))
    assert reply.answer[0][0].serial == 7


def test_dns_ttls_come_from_the_config() -> None:
    server = _server(dns_ttl=30, dns_negative_ttl=2)
    ok = _ask(server, dns.message.make_query(f"auth.{ZONE}", "A"))
    missing = _ask(server, dns.message.make_query(f"nope.{ZONE}", "A"))
    assert ok.answer[0].ttl == 30
    assert missing.authority[0].ttl == 2 and missing.authority[0][0].minimum == 2


def test_outside_zones_with_upstreams_becomes_a_forward() -> None:
    server = _server(upstreams=["127.0.0.1:1"])
    reply = server.answer(dns.message.make_query("example.com.", "A").to_wire(), True)
    assert isinstance(reply, Forward)
    assert server.stats()["forwarded"] == 1
