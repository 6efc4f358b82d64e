"""Who DNS answers, and for whom it forwards: --dns-allow and --recursion-allow over
real UDP and TCP sockets (clients bound to 127.0.0.1 and 127.0.0.2), a real upstream,
and the address lists and "own networks" behind them."""

from __future__ import annotations

import ipaddress
import socket

import dns.flags
import dns.message
import dns.rcode
import pytest
from conftest import eventually
from dns_helpers import (
    UPSTREAM_ZONE,
    ZONE,
    ask,
    config,
    dns_path,  # noqa: F401  (autouse: every path)
    example_registry,
    running,
    upstream,
)

from jarvis_dns.config import Config
from jarvis_dns.dns.access import PLAIN, Policy
from jarvis_dns.dns.localnets import own_networks, parse_ipv6_addresses, parse_routes
from jarvis_dns.errors import ConfigError

TRANSPORTS = pytest.mark.parametrize("transport", ["udp", "tcp"])


@TRANSPORTS
async def test_dns_allow_refuses_everyone_else(transport: str) -> None:
    async with running(example_registry(), config(dns_allow=["127.0.0.2"])) as server:
        denied = await ask(server, f"auth.{ZONE}", "A", transport, source="127.0.0.1")
        allowed = await ask(server, f"auth.{ZONE}", "A", transport, source="127.0.0.2")
        assert server.stats()["denied"] == 1
    assert denied.rcode == "REFUSED" and denied.answer == [] and denied.authority == []
    assert not denied.message.flags & (dns.flags.AA | dns.flags.RA)
    assert denied.message.question[0].name.to_text() == f"auth.{ZONE}"
    assert allowed.answer == [f"auth.{ZONE} 5 A 10.0.0.11"]


async def test_garbage_from_a_denied_client_is_dropped_not_refused() -> None:
    """The first reply on the socket is the one to the query sent after the garbage."""
    async with running(example_registry(), config(dns_allow=["none"])) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sock.sendto(b"\x00\x01garbage", server.addresses[0])
            query = dns.message.make_query(f"auth.{ZONE}", "A")
            sock.sendto(query.to_wire(), server.addresses[0])
            await eventually(lambda: server.stats()["queries_udp"] == 2)
            first = dns.message.from_wire(sock.recv(4096))
        assert server.stats()["dropped"] == 1
    assert first.id == query.id and first.rcode() == dns.rcode.REFUSED


@TRANSPORTS
async def test_recursion_only_for_recursion_allow(transport: str) -> None:
    """127.0.0.1 is outside --recursion-allow: its names outside our zones are REFUSED
    and no answer says recursion is available to it; 127.0.0.2 is forwarded."""
    async with upstream() as up:
        cfg = config(upstreams=[up], recursion_allow=["127.0.0.2/32"])
        async with running(example_registry(), cfg) as server:
            outside = await ask(server, f"svc.{UPSTREAM_ZONE}", "A", transport, source="127.0.0.1")
            ours = await ask(server, f"auth.{ZONE}", "A", transport, source="127.0.0.1")
            allowed = await ask(server, f"svc.{UPSTREAM_ZONE}", "A", transport, source="127.0.0.2")
            stats = server.stats()
    assert outside.rcode == "REFUSED" and outside.answer == []
    assert not outside.message.flags & dns.flags.RA
    assert ours.answer == [f"auth.{ZONE} 5 A 10.0.0.11"] and not ours.message.flags & dns.flags.RA
    assert allowed.answer == [f"svc.{UPSTREAM_ZONE} 5 A 192.0.2.1"]
    assert allowed.message.flags & dns.flags.RA
    assert (stats["recursion_refused"], stats["forwarded"]) == (1, 1)


async def test_loopback_may_recurse_by_default() -> None:
    async with upstream() as up, running(example_registry(), config(upstreams=[up])) as server:
        reply = await ask(server, f"svc.{UPSTREAM_ZONE}", "A", source="127.0.0.1")
        assert server.sources["127.0.0.1"] is PLAIN
    assert reply.answer == [f"svc.{UPSTREAM_ZONE} 5 A 192.0.2.1"]


async def test_a_denied_client_over_udp_is_rate_limited_too() -> None:
    """REFUSED is an answer like any other for RRL (the errors account)."""
    cfg = config(dns_allow=["none"], rrl_rps=1, rrl_exempt=["none"])
    async with running(example_registry(), cfg) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for i in range(4):
                query = dns.message.make_query(f"n{i}.{ZONE}", "A")
                sock.sendto(query.to_wire(), server.addresses[0])
            await eventually(lambda: server.stats()["queries_udp"] == 4)
        stats = server.stats()
    assert (stats["denied"], stats["rrl_limited"]) == (4, 3)


# -- the address lists ----------------------------------------------------------------


def policy(localnets: list[str] | None = None, **settings: object) -> Policy:
    """The policy of these settings on a host whose own networks are `localnets`."""
    nets = [ipaddress.ip_network(n) for n in localnets or []]
    cfg = Config(**settings)  # type: ignore[arg-type]
    return Policy.from_config(cfg, forwarding=True, localnets=lambda: nets)


def test_recursion_allow_defaults_to_loopback_and_own_networks() -> None:
    p = policy(["192.0.2.0/24", "2001:db8:1::/64"])
    assert p.admit("127.0.0.1") is PLAIN and p.admit("::1") is PLAIN
    assert p.admit("192.0.2.77").recursion and p.admit("2001:db8:1::5").recursion
    assert not p.admit("198.51.100.1").recursion
    assert not p.admit("2001:db8:2::5").recursion


def test_address_lists_take_networks_addresses_and_words() -> None:
    p = policy(["10.1.0.0/16"], dns_allow=["10.0.0.1", "192.0.2.0/24", "localnets"])
    hosts = ("10.0.0.1", "10.0.0.2", "192.0.2.9", "10.1.2.3")
    assert [p.admit(h).allowed for h in hosts] == [True, False, True, True]
    assert not policy(dns_allow=["none"]).admit("127.0.0.1").allowed
    assert policy(dns_allow=["any"]).admit("2001:db8::1").allowed


@pytest.mark.parametrize(
    ("setting", "flag"),
    [
        ("dns_allow", "--dns-allow"),
        ("rrl_exempt", "--rrl-exempt"),
        ("recursion_allow", "--recursion-allow"),
    ],
)
def test_a_bad_list_item_is_a_config_error_naming_the_flag(setting: str, flag: str) -> None:
    with pytest.raises(ConfigError, match=f"{flag}: '10.0.0.0/33'"):
        policy(**{setting: ["10.0.0.0/33"]})


def test_list_flags_take_commas_and_repeats() -> None:
    from jarvis_dns.cli import build_parser, config_from_args

    args = ["serve", "--rrl-exempt", "10.0.0.0/8,192.168.0.0/16", "--rrl-exempt", "::1"]
    cfg = config_from_args(build_parser().parse_args(args))
    assert cfg.rrl_exempt == ["10.0.0.0/8", "192.168.0.0/16", "::1"]


# -- own networks ---------------------------------------------------------------------

ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0000A8C0\t0101000A\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
IF_INET6 = """fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
00000000000000000000000000000001 01 80 10 80       lo
"""


def test_own_networks_are_the_routes_without_a_gateway() -> None:
    """The default route and a route via a gateway are not this host's networks."""
    assert [str(n) for n in parse_routes(ROUTES)] == ["192.0.2.0/24", "10.0.0.0/16"]


def test_own_ipv6_networks_take_each_address_prefix_length() -> None:
    found = parse_ipv6_addresses(IF_INET6)
    assert [str(n) for n in found] == ["fe80::/64", "fd00::/64", "::1/128"]


def test_own_networks_include_the_listening_addresses() -> None:
    found = own_networks(["0.0.0.0", "127.0.0.53", "[::]"])
    assert ipaddress.ip_network("127.0.0.53/32") in found
    assert not any(n.prefixlen == 0 for n in found)  # never "everyone"
