"""Zone transfers against a real server, with dnspython's transfer client: who may,
AXFR, IXFR (and its fall back to AXFR), TSIG over many messages, zone files."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.versioned
import dns.xfr
import dns.zone
import pytest
from conftest import app_config, running_app
from dns_helpers import records

from jarvis_dns.models import InstanceSpec, Status

ZONE = "jarvis.internal."
SECRET = base64.b64encode(b"the transfer key, thirty-two by.").decode()
XFR = dns.tsigkeyring.from_text({"xfr.": SECRET})
WEB = dns.tsigkeyring.from_text({"web-key.": SECRET})
WRONG = dns.tsigkeyring.from_text({"xfr.": base64.b64encode(b"not it").decode()})
STATIC = """$ORIGIN example.internal.
$TTL 600
@    IN SOA ns1.example.internal. admin.example.internal. 2024010101 3600 600 86400 60
@    IN NS  ns1
ns1  IN A   192.0.2.53
www  IN CNAME ns1
@    IN MX  10 mail.example.net.
txt  IN TXT "hello world" "two"
"""


class Server:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = app.dns_addresses[0][1]

    async def register(self, svc: str, iid: int, host: str, **kw: Any) -> None:
        await self.app.changes.register(InstanceSpec(svc, iid, host, 8000 + iid, **kw))

    async def transfer(
        self, zone: dns.zone.Zone, keyring: Any = XFR, serial: int | None = 0
    ) -> None:
        query, _ = dns.xfr.make_query(zone, serial=serial, keyring=keyring, keyname=_name(keyring))
        await dns.asyncquery.inbound_xfr("127.0.0.1", zone, query, port=self.port, timeout=10)

    async def ask(self, query: dns.message.Message, tcp: bool = True) -> Any:
        """The reply, its TSIG checked by dnspython when the query was signed."""
        send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
        return await send(query, "127.0.0.1", port=self.port, timeout=5)

    async def raw(self, query: dns.message.Message) -> dns.message.Message:
        """The first reply message over TCP, its TSIG read but not checked, every record
        its own RRset (an IXFR's SOAs apart, in order)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            wire = query.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            size = int.from_bytes(await reader.readexactly(2), "big")
            wire = await reader.readexactly(size)
            return dns.message.from_wire(wire, keyring=False, one_rr_per_rrset=True)
        finally:
            writer.close()


def _name(keyring: Any) -> dns.name.Name | None:
    return next(iter(keyring)) if keyring else None


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "example.internal.zone").write_text(STATIC)
    config = app_config(
        tmp_path,
        tsig_keys=[f"xfr:hmac-sha256:{SECRET}", f"web-key:hmac-sha256:{SECRET}"],
        transfer_allow=["10.0.0.0/8", "key:xfr"],  # not 127.0.0.1: the tests' own address
        event_log_size=20,
    )
    async with running_app(config) as app:
        yield Server(app)


def fresh() -> dns.versioned.Zone:
    return dns.versioned.Zone(ZONE)


# -- who may


async def test_transfers_from_outside_the_allow_list_without_a_key_are_refused(
    server: Server,
) -> None:
    for rdtype in ("AXFR", "IXFR"):
        query = dns.message.make_query(ZONE, rdtype)
        if rdtype == "IXFR":
            query.authority.append(_soa_rrset(1))
        assert (await server.ask(query)).rcode() == dns.rcode.REFUSED
    signed = dns.message.make_query(ZONE, "AXFR")
    signed.use_tsig(WEB, "web-key.")  # a good key, but not one --transfer-allow names
    reply = await server.ask(signed)
    assert reply.rcode() == dns.rcode.REFUSED
    stats = server.app.dns.stats()
    assert stats["transfers_refused"] == 3 and stats["axfr"] == stats["ixfr"] == 0


async def test_a_wrong_secret_is_notauth_badsig(server: Server) -> None:
    query = dns.message.make_query(ZONE, "AXFR")
    query.use_tsig(WRONG, "xfr.")
    reply = await server.raw(query)  # its TSIG holds the error, unsigned
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig[0].error == dns.rcode.BADSIG
    assert reply.tsig[0].mac == b""
    with pytest.raises(dns.tsig.PeerBadSignature):  # what a client makes of it
        await server.ask(query)


# -- AXFR and IXFR


async def test_a_signed_axfr_of_many_messages_is_the_whole_zone(server: Server) -> None:
    for i in range(400):
        await server.register(f"svc-{i % 7}", i, f"10.1.{i // 250}.{i % 250}")
    zone = fresh()
    await server.transfer(zone, serial=None)  # dnspython checks every message's TSIG
    got = records(zone)
    assert len(got) > 400 * 6  # SRV, PTR, SRV, TXT, TXT, A each, and more
    assert f"_svc-3._tcp.{ZONE} 5 SRV 0 100 8003 3.svc-3.{ZONE}" in got
    assert f"svc-3.{ZONE} 5 A 10.1.0.3" in got
    soa = zone.get_soa()
    assert soa.serial == server.app.view.index


async def test_ixfr_brings_a_copy_up_to_date(server: Server) -> None:
    for i in range(6):
        await server.register("auth", i, f"10.0.0.{i}", metadata={"tags": ["blue"]})
    copy = fresh()
    await server.transfer(copy, serial=None)
    serial = copy.get_soa().serial
    await server.register("auth", 9, "10.0.0.9")
    await server.app.changes.set_status("auth", 1, busy=True)
    await server.app.changes.set_status("auth", 2, status=Status.MAINTENANCE)
    await server.app.changes.deregister("auth", 3)
    await server.register("auth", 4, "10.0.0.44")  # a moved address

    query = dns.message.make_query(ZONE, "IXFR")
    query.authority.append(_soa_rrset(serial))
    query.use_tsig(XFR, "xfr.")
    reply = await server.raw(query)
    first, second = reply.answer[0], reply.answer[1]
    assert first.rdtype == second.rdtype == dns.rdatatype.SOA  # incremental: old SOA next
    assert second[0].serial == serial
    assert server.app.dns.stats()["ixfr"] == 1

    await server.transfer(copy)  # IXFR from the copy's serial, applied by dnspython
    whole = fresh()
    await server.transfer(whole, serial=None)
    assert records(copy) == records(whole)
    assert copy.get_soa().serial == server.app.view.index


async def test_ixfr_from_beyond_the_journal_is_the_whole_zone(server: Server) -> None:
    await server.register("auth", 1, "10.0.0.1")
    copy = fresh()
    await server.transfer(copy, serial=None)
    serial = copy.get_soa().serial
    for i in range(30):  # more changes than the journal keeps (--event-log-size 20)
        await server.app.changes.set_status("auth", 1, busy=i % 2 == 0)
    query = dns.message.make_query(ZONE, "IXFR")
    query.authority.append(_soa_rrset(serial))
    query.use_tsig(XFR, "xfr.")
    reply = await server.raw(query)
    assert reply.answer[1].rdtype != dns.rdatatype.SOA  # AXFR form (RFC 1995 4)
    assert server.app.dns.stats()["ixfr_full"] == 1
    await server.transfer(copy)
    whole = fresh()
    await server.transfer(whole, serial=None)
    assert records(copy) == records(whole)


async def test_ixfr_when_up_to_date_and_over_udp_is_one_soa(server: Server) -> None:
    await server.register("auth", 1, "10.0.0.1")
    index = server.app.view.index
    for tcp, serial in [(True, index), (True, index + 5), (False, index - 1)]:
        query = dns.message.make_query(ZONE, "IXFR")
        query.authority.append(_soa_rrset(serial))
        query.use_tsig(XFR, "xfr.")
        reply = await server.ask(query, tcp=tcp)
        assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.SOA]
        assert reply.answer[0][0].serial == index


async def test_axfr_over_udp_is_notimp(server: Server) -> None:
    query = dns.message.make_query(ZONE, "AXFR")
    query.use_tsig(XFR, "xfr.")
    assert (await server.ask(query, tcp=False)).rcode() == dns.rcode.NOTIMP


async def test_a_zone_file_transfers_too(server: Server) -> None:
    zone = dns.versioned.Zone("example.internal.")
    await server.transfer(zone, serial=None)
    z = "example.internal."
    assert records(zone) == {
        f"{z} 600 SOA ns1.{z} admin.{z} 2024010101 3600 600 86400 60",
        f"{z} 600 NS ns1.{z}",
        f"{z} 600 MX 10 mail.example.net.",
        f"ns1.{z} 600 A 192.0.2.53",
        f"www.{z} 600 CNAME ns1.{z}",
        f'txt.{z} 600 TXT "hello world" "two"',
    }
    query = dns.message.make_query("example.internal.", "IXFR")
    query.authority.append(_soa_rrset(2024010101, "example.internal."))
    query.use_tsig(XFR, "xfr.")
    reply = await server.ask(query)
    assert len(reply.answer) == 1  # up to date


async def test_a_zone_not_ours_is_notauth(server: Server) -> None:
    query = dns.message.make_query("example.com.", "AXFR")
    query.use_tsig(XFR, "xfr.")
    assert (await server.ask(query)).rcode() == dns.rcode.NOTAUTH


async def test_a_signed_query_gets_a_signed_answer(server: Server) -> None:
    await server.register("auth", 1, "10.0.0.1")
    query = dns.message.make_query(f"_auth._tcp.{ZONE}", "SRV")
    query.use_tsig(WEB, "web-key.")
    reply = await server.ask(query, tcp=False)  # dnspython verifies it
    assert reply.had_tsig and reply.answer[0][0].port == 8001


def _soa_rrset(serial: int, zone: str = ZONE) -> Any:
    return dns.rrset.from_text(zone, 0, "IN", "SOA", f"ns. host. {serial} 1 1 1 1")


async def test_a_source_in_the_allowed_network_transfers_without_a_key(tmp_path: Path) -> None:
    config = app_config(tmp_path, transfer_allow=["127.0.0.0/8"])
    async with running_app(config) as app:
        server = Server(app)
        await server.register("auth", 1, "10.0.0.1")
        zone = fresh()
        await server.transfer(zone, keyring=None, serial=None)
        assert f"_auth._tcp.{ZONE} 5 SRV 0 100 8001 1.auth.{ZONE}" in records(zone)
        update = dns.message.make_query(ZONE, "SOA")
        update.set_opcode(dns.opcode.UPDATE)  # an allowed network may read, never write
        assert (await server.ask(update, tcp=False)).rcode() == dns.rcode.REFUSED
