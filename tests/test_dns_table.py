"""Every row of the naming table, (qname, qtype) -> (rcode, records), over real UDP and TCP."""

from __future__ import annotations

import pytest
from dns_helpers import (
    ZONE,
    ask,
    dns_path,  # noqa: F401  (autouse: every path)
    example_registry,
    running,
)

Z = ZONE
SOA_AUTH = [f"{Z} 5 SOA ns.{Z} hostmaster.{Z} {{serial}} 60 30 86400 5"]
AUTH_GLUE = [
    f"1.auth.{Z} 5 A 10.0.0.11",
    f"2.auth.{Z} 5 A 10.0.0.12",
    f"4.auth.{Z} 5 AAAA fd00::14",
]
TXT_1 = '"version=2.1" "region=eu" "tags=[\\"blue\\",\\"eu\\"]" "busy=false" "status=active"'

# (qname, qtype) -> (rcode, answer, additional); answers compare as sorted lists,
# "negative" rows expect the zone's SOA in authority (RFC 2308).
CASES: list[tuple[str, str, str, list[str], list[str]]] = [
    # _<svc>._tcp.Z SRV: live only (3 is dead), busy at priority 10, glue in additional
    (
        f"_auth._tcp.{Z}",
        "SRV",
        "NOERROR",
        [
            f"_auth._tcp.{Z} 5 SRV 0 100 8443 1.auth.{Z}",
            f"_auth._tcp.{Z} 5 SRV 10 1 8443 2.auth.{Z}",
            f"_auth._tcp.{Z} 5 SRV 0 100 8443 4.auth.{Z}",
        ],
        AUTH_GLUE,
    ),
    # _<svc>._tcp.Z PTR: DNS-SD browse
    (
        f"_auth._tcp.{Z}",
        "PTR",
        "NOERROR",
        [f"_auth._tcp.{Z} 5 PTR {i}._auth._tcp.{Z}" for i in (1, 2, 4)],
        [],
    ),
    # <id>._<svc>._tcp.Z SRV and TXT: DNS-SD resolve
    (
        f"1._auth._tcp.{Z}",
        "SRV",
        "NOERROR",
        [f"1._auth._tcp.{Z} 5 SRV 0 100 8443 1.auth.{Z}"],
        [f"1.auth.{Z} 5 A 10.0.0.11"],
    ),
    (f"1._auth._tcp.{Z}", "TXT", "NOERROR", [f"1._auth._tcp.{Z} 5 TXT {TXT_1}"], []),
    (
        f"2._auth._tcp.{Z}",
        "TXT",
        "NOERROR",
        [
            f'2._auth._tcp.{Z} 5 TXT "version=2.1" "tags=[\\"green\\"]" '
            '"capabilities=[\\"oauth\\"]" "busy=true" "status=active"'
        ],
        [],
    ),
    # <svc>.Z A/AAAA: idle live instances only (2 is busy, 3 dead)
    (f"auth.{Z}", "A", "NOERROR", [f"auth.{Z} 5 A 10.0.0.11"], []),
    (f"auth.{Z}", "AAAA", "NOERROR", [f"auth.{Z} 5 AAAA fd00::14"], []),
    (f"web.{Z}", "A", "NOERROR", [f"web.{Z} 5 A 127.0.0.1"], []),  # localhost
    # <id>.<svc>.Z A, AAAA, TXT
    (f"1.auth.{Z}", "A", "NOERROR", [f"1.auth.{Z} 5 A 10.0.0.11"], []),
    (f"2.auth.{Z}", "A", "NOERROR", [f"2.auth.{Z} 5 A 10.0.0.12"], []),  # busy is live
    (f"4.auth.{Z}", "AAAA", "NOERROR", [f"4.auth.{Z} 5 AAAA fd00::14"], []),
    (f"1.auth.{Z}", "TXT", "NOERROR", [f"1.auth.{Z} 5 TXT {TXT_1}"], []),
    # _<tag>._sub._<svc>._tcp.Z PTR and SRV: from tags and capabilities
    (
        f"_blue._sub._auth._tcp.{Z}",
        "PTR",
        "NOERROR",
        [f"_blue._sub._auth._tcp.{Z} 5 PTR 1._auth._tcp.{Z}"],
        [],
    ),
    (
        f"_blue._sub._auth._tcp.{Z}",
        "SRV",
        "NOERROR",
        [f"_blue._sub._auth._tcp.{Z} 5 SRV 0 100 8443 1.auth.{Z}"],
        [f"1.auth.{Z} 5 A 10.0.0.11"],
    ),
    (
        f"_oauth._sub._auth._tcp.{Z}",
        "PTR",
        "NOERROR",
        [f"_oauth._sub._auth._tcp.{Z} 5 PTR {i}._auth._tcp.{Z}" for i in (2, 4)],
        [],
    ),
    # _services._dns-sd._udp.Z PTR: types with a live instance (maint has none)
    (
        f"_services._dns-sd._udp.{Z}",
        "PTR",
        "NOERROR",
        [f"_services._dns-sd._udp.{Z} 5 PTR _{s}._tcp.{Z}" for s in ("auth", "web")],
        [],
    ),
    # Z SOA and NS
    (Z, "SOA", "NOERROR", [SOA_AUTH[0]], []),
    (Z, "NS", "NOERROR", [f"{Z} 5 NS ns.{Z}"], [f"ns.{Z} 5 A 127.0.0.1"]),
    (f"ns.{Z}", "A", "NOERROR", [f"ns.{Z} 5 A 127.0.0.1"], []),
    # a host name is answered without glue (no CNAME, no resolving)
    (
        f"edge._web._tcp.{Z}",
        "SRV",
        "NOERROR",
        [f"edge._web._tcp.{Z} 5 SRV 0 100 443 edge.web.{Z}"],
        [],
    ),
    # RFC 8482: ANY gets one HINFO
    (Z, "ANY", "NOERROR", [f'{Z} 5 HINFO "RFC8482" ""'], []),
    (f"_auth._tcp.{Z}", "ANY", "NOERROR", [f'_auth._tcp.{Z} 5 HINFO "RFC8482" ""'], []),
]

NXDOMAIN: list[tuple[str, str]] = [
    (f"nope.{Z}", "A"),
    (f"_nope._tcp.{Z}", "SRV"),
    (f"_maint._tcp.{Z}", "SRV"),  # maintenance only: never answered
    (f"maint.{Z}", "A"),
    (f"3._auth._tcp.{Z}", "SRV"),  # dead
    (f"3.auth.{Z}", "A"),
    (f"9.auth.{Z}", "TXT"),
    (f"_red._sub._auth._tcp.{Z}", "PTR"),
    (f"a.b.c.{Z}", "A"),
    (f"nope.{Z}", "ANY"),
]

NODATA: list[tuple[str, str]] = [
    (f"auth.{Z}", "TXT"),
    (f"_auth._tcp.{Z}", "A"),
    (f"1._auth._tcp.{Z}", "A"),
    (f"web.{Z}", "AAAA"),
    (f"edge.web.{Z}", "A"),  # host name: no address record
    (f"_tcp.{Z}", "PTR"),  # empty non-terminals (RFC 8020)
    (f"_sub._auth._tcp.{Z}", "PTR"),
    (f"_dns-sd._udp.{Z}", "PTR"),
    (Z, "A"),
    (f"_services._dns-sd._udp.{Z}", "SRV"),
]

TRANSPORTS = ["udp", "tcp"]


def _ids(cases: list[tuple[str, ...]]) -> list[str]:
    return [f"{c[0]}/{c[1]}" for c in cases]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "answer", "additional"), CASES, ids=_ids(CASES)
)
async def test_positive(
    transport: str, qname: str, qtype: str, rcode: str, answer: list[str], additional: list[str]
) -> None:
    reg = example_registry()
    async with running(reg) as server:
        reply = await ask(server, qname, qtype, transport)
    expected = [a.format(serial=reg.index) for a in answer]
    assert (reply.rcode, sorted(reply.answer)) == (rcode, sorted(expected))
    assert sorted(reply.additional) == sorted(additional)
    assert reply.authority == []
    assert reply.message.flags & 0x0400  # AA: we are the authority


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("qname", "qtype"), NXDOMAIN, ids=_ids(NXDOMAIN))
async def test_nxdomain(transport: str, qname: str, qtype: str) -> None:
    reg = example_registry()
    async with running(reg) as server:
        reply = await ask(server, qname, qtype, transport)
    assert (reply.rcode, reply.answer) == ("NXDOMAIN", [])
    assert reply.authority == [SOA_AUTH[0].format(serial=reg.index)]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("qname", "qtype"), NODATA, ids=_ids(NODATA))
async def test_nodata(transport: str, qname: str, qtype: str) -> None:
    reg = example_registry()
    async with running(reg) as server:
        reply = await ask(server, qname, qtype, transport)
    assert (reply.rcode, reply.answer) == ("NOERROR", [])
    assert reply.authority == [SOA_AUTH[0].format(serial=reg.index)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_outside_every_zone_is_refused(transport: str) -> None:
    async with running(example_registry()) as server:
        reply = await ask(server, "example.com.", "A", transport)
        assert reply.rcode == "REFUSED"
        assert not reply.message.flags & 0x0400
        assert server.stats()["refused"] == 1
