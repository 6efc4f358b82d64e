"""Static zones: parsing, errors with file and line, serving, reload, registry precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from dns_helpers import (
    ZONE,
    ask,
    config,
    dns_path,  # noqa: F401  (autouse: every path)
    example_registry,
    running,
)

from jarvis_dns.dns.zones import load_dir, parse_ttl, parse_zone
from jarvis_dns.errors import ZoneError

REPO_ZONES = Path(__file__).resolve().parent.parent / "zones"

GOOD = """\
$ORIGIN corp.internal.
$TTL 120
@    IN SOA ns hostmaster ( 1 3600 600 86400 30 )
     IN NS  ns
ns   IN A   127.0.0.1
app  IN A   192.0.2.10
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    path = zones / name
    path.write_text(text)
    return path


def test_the_shipped_example_zone_loads() -> None:
    zones = load_dir(str(REPO_ZONES), ZONE)
    assert list(zones) == ["example.internal."]
    assert zones["example.internal."].soa is not None


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("@ IN SOA ns hm 1 2 3 4 5\nwww IN A 300.1.1.1\n", 2, "300.1.1.1"),
        ("@ IN SOA ns hm 1 2 3 4 5\nwww IN BOGUS x\n", 2, "unsupported record type BOGUS"),
        ("@ IN SOA ns hm 1 2 3 4 5\n\n\nsrv IN SRV 0 0 99999 t\n", 4, "out of 0-65535"),
        ("@ IN SOA ns hm 1 2 3 4 5\nwww IN A (\n 1.2.3.4\n", 2, "unbalanced '('"),
        ('@ IN SOA ns hm 1 2 3 4 5\nt IN TXT "open\n', 2, "unterminated"),
        ("$INCLUDE other.zone\n", 1, "unsupported directive"),
        ("@ IN SOA ns hm 1 2 3 4 5\nwww.other.test. IN A 1.2.3.4\n", 2, "outside the zone"),
        ("@ IN SOA ns hm 1 2 3 4 5\nx IN CNAME y\nx IN A 1.2.3.4\n", 3, "CNAME"),
        ("@ IN SOA ns hm 1 2 3 4 5\n@ IN SOA ns hm 1 2 3 4 5\n", 2, "one SOA"),
        ("www IN A 1.2.3.4\n", 1, "no SOA"),
        ("@ IN SOA ns hm 1 2 3 4 5\nwww IN A\n", 2, "A takes 1 fields"),
        ("@ IN SOA ns hm 1 2 3 4 5\nwww 5x IN A 1.2.3.4\n", 2, "bad TTL"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ZoneError) as caught:
        parse_zone(text, "zones/t.zone", "t.test.")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"zones/t.zone:{line}: ")
    assert fragment in str(caught.value)


def test_master_format_details() -> None:
    text = (
        "$TTL 1h\n"
        "@ IN SOA ns hm ( 7 ; serial\n 1h 10m 1d 30 )\n"
        'a 60 IN TXT "two words" "semi;colon" plain\n'
        "  IN A 192.0.2.1 ; blank owner: a again\n"
        "b IN 45 MX 5 a\n"
    )
    zone = parse_zone(text, "t.zone", "t.test.")
    a = zone.nodes["a.t.test."]
    assert [bytes(s) for s in a[16].records[0].rdata.data] == [
        b"two words",
        b"semi;colon",
        b"plain",
    ]
    assert a[1].records[0].ttl == 3600
    mx = zone.nodes["b.t.test."][15]
    assert mx.records[0].ttl == 45 and len(mx.additional) == 1  # in-zone glue
    assert zone.soa is not None and zone.soa.rdata.times == (7, 3600, 600, 86400, 30)
    assert parse_ttl("1h30m") == 5400


def test_duplicate_zones_are_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.zone", GOOD)
    _write(tmp_path, "b.zone", GOOD)
    with pytest.raises(ZoneError, match=r"corp\.internal\. is also defined"):
        load_dir(str(tmp_path / "zones"), ZONE)


async def test_static_zone_is_served(tmp_path: Path) -> None:
    _write(tmp_path, "corp.zone", GOOD)
    async with running(example_registry(), config(tmp_path)) as server:
        ok = await ask(server, "APP.corp.internal.", "A")
        missing = await ask(server, "nope.corp.internal.", "A", "tcp")
        assert server.reload_zones() == ["corp.internal."]
    assert ok.answer == ["APP.corp.internal. 120 A 192.0.2.10"]
    assert ok.message.flags & 0x0400
    assert missing.rcode == "NXDOMAIN"
    assert missing.authority == [
        "corp.internal. 30 SOA ns.corp.internal. hostmaster.corp.internal. 1 3600 600 86400 30"
    ]


async def test_example_zone_follows_cnames_and_adds_glue() -> None:
    cfg = config(zones_dir=str(REPO_ZONES))
    async with running(example_registry(), cfg) as server:
        docs = await ask(server, "docs.example.internal.", "A")
        mx = await ask(server, "example.internal.", "MX")
        ent = await ask(server, "_tcp.example.internal.", "SRV")
    assert docs.answer == [
        "docs.example.internal. 3600 CNAME www.example.internal.",
        "www.example.internal. 300 A 192.0.2.80",
    ]
    assert mx.additional == ["mail.example.internal. 300 A 192.0.2.25"]
    assert (ent.rcode, ent.answer) == ("NOERROR", [])


async def test_broken_reload_keeps_the_old_data(tmp_path: Path) -> None:
    path = _write(tmp_path, "corp.zone", GOOD)
    async with running(example_registry(), config(tmp_path)) as server:
        path.write_text(GOOD.replace("192.0.2.10", "192.0.2.999"))
        with pytest.raises(ZoneError) as caught:
            server.reload_zones()
        assert str(caught.value) == f"{path}:6: Octet 999 (> 255) not permitted in '192.0.2.999'"
        still = await ask(server, "app.corp.internal.", "A")
        path.write_text(GOOD.replace("192.0.2.10", "192.0.2.11"))
        server.reload_zones()
        fixed = await ask(server, "app.corp.internal.", "A")
    assert still.answer == ["app.corp.internal. 120 A 192.0.2.10"]
    assert fixed.answer == ["app.corp.internal. 120 A 192.0.2.11"]


async def test_a_broken_zone_at_start_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "corp.zone", "@ IN SOA ns hm 1 2 3 4 5\nx IN A nope\n")
    with pytest.raises(ZoneError, match=r"corp.zone:2: "):
        async with running(example_registry(), config(tmp_path)):
            pass


REGISTRY_ZONE_FILE = """\
$ORIGIN jarvis.internal.
@        IN SOA dns1 admin 1 3600 600 86400 5
         IN NS  dns1
dns1     IN A   192.0.2.53
gateway  IN A   192.0.2.1
auth     IN A   192.0.2.99
"""


async def test_registry_zone_file_adds_names_and_the_registry_wins(tmp_path: Path) -> None:
    _write(tmp_path, "jarvis.internal.zone", REGISTRY_ZONE_FILE)
    reg = example_registry()
    async with running(reg, config(tmp_path)) as server:
        gateway = await ask(server, f"gateway.{ZONE}", "A")
        auth = await ask(server, f"auth.{ZONE}", "A")
        ns = await ask(server, ZONE, "NS")
        soa = await ask(server, ZONE, "SOA")
        srv = await ask(server, f"_auth._tcp.{ZONE}", "SRV")
    assert gateway.answer == [f"gateway.{ZONE} 3600 A 192.0.2.1"]
    assert auth.answer == [f"auth.{ZONE} 5 A 10.0.0.11"]  # the registry, not the file
    assert ns.answer == [f"{ZONE} 3600 NS dns1.{ZONE}"]
    assert ns.additional == [f"dns1.{ZONE} 3600 A 192.0.2.53"]
    assert soa.answer == [f"{ZONE} 3600 SOA dns1.{ZONE} admin.{ZONE} {reg.index} 3600 600 86400 5"]
    assert len(srv.answer) == 3
