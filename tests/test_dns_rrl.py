"""Response-rate limiting: the limiter's arithmetic on a fake clock (exact counts), the
client networks it accounts by, and a flood over a real UDP socket (dnspython makes and
reads the messages), with the counters in /v1/health."""

from __future__ import annotations

import socket
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import httpx
import pytest
from conftest import FakeClock, app_config, eventually, running_app
from dns_helpers import ZONE, config, example_registry, running

from jarvis_dns.config import Config
from jarvis_dns.dns.access import PLAIN, Policy
from jarvis_dns.dns.proto import truncated
from jarvis_dns.dns.rrl import DROP, SEND, SLIP, WINDOW_S, RateLimiter

NET = "192.0.2.0/24"


def reply(name: str = "a.example.", rdtype: str = "A", rcode: str = "NOERROR") -> bytes:
    """A response as the server sends it: with one answer when NOERROR and A."""
    response = dns.message.make_response(dns.message.make_query(name, rdtype))
    response.set_rcode(dns.rcode.from_text(rcode))
    if rcode == "NOERROR" and rdtype == "A":
        response.answer.append(dns.rrset.from_text(name, 5, "IN", "A", "192.0.2.1"))
    return response.to_wire()


def run(limiter: RateLimiter, count: int, wire: bytes | None = None, net: str = NET) -> str:
    """Verdicts as letters: S(end), s(lip), d(rop)."""
    letters = {SEND: "S", SLIP: "s", DROP: "d"}
    return "".join(letters[limiter.verdict(net, wire or reply())] for _ in range(count))


def test_rps_answers_then_every_second_limited_one_slips() -> None:
    limiter = RateLimiter(5, 2, FakeClock())
    assert run(limiter, 12) == "SSSSS" + "sdsdsds"


@pytest.mark.parametrize(("slip", "expected"), [(0, "dddd"), (1, "ssss"), (3, "sdds")])
def test_slip_sets_how_many_limited_answers_go_out_truncated(slip: int, expected: str) -> None:
    limiter = RateLimiter(2, slip, FakeClock())
    assert run(limiter, 6) == "SS" + expected


def test_credit_comes_back_at_rps_a_second_less_the_debt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 2, clock)
    assert run(limiter, 7) == "SSSSSsd"  # balance -2
    clock.advance(1.0)  # +5, so 3 to spend
    assert run(limiter, 4) == "SSSs"
    clock.advance(0.2)  # +1 pays the debt of the last one: still nothing to spend
    assert run(limiter, 1) == "d"
    clock.advance(60.0)  # credit never exceeds one second's worth
    assert run(limiter, 6) == "SSSSSs"


def test_debt_is_kept_to_the_window() -> None:
    """After a flood of any length, answers resume within the window (BIND's 15 s)."""
    clock = FakeClock()
    limiter = RateLimiter(2, 2, clock)
    run(limiter, 10_000)
    clock.advance(WINDOW_S)  # pays the window's worth of debt, to 0
    assert run(limiter, 1) == "s"  # a limited answer is spent too: -1
    clock.advance(1.0)
    assert run(limiter, 1) == "S"


def test_identical_responses_share_an_account_others_do_not() -> None:
    limiter = RateLimiter(1, 2, FakeClock())
    assert run(limiter, 2, reply("a.example.")) == "Ss"
    assert run(limiter, 1, reply("A.EXAMPLE.")) == "d"  # names match without case
    assert run(limiter, 1, reply("b.example.")) == "S"
    assert run(limiter, 1, reply("a.example.", "AAAA")) == "S"  # NODATA, its own
    assert run(limiter, 1, reply("a.example.", "TXT")) == "S"  # another type, another
    assert run(limiter, 1, reply("a.example."), net="192.0.3.0/24") == "S"


def test_nxdomain_and_errors_each_share_one_account_per_network() -> None:
    """Random names must not each get a fresh account."""
    limiter = RateLimiter(1, 2, FakeClock())
    nx = [reply(f"r{i}.example.", rcode="NXDOMAIN") for i in range(3)]
    assert [run(limiter, 1, wire) for wire in nx] == ["S", "s", "d"]
    rcodes = ["REFUSED", "SERVFAIL", "FORMERR"]
    errors = [reply(f"e{i}.", rcode=rcode) for i, rcode in enumerate(rcodes)]
    assert [run(limiter, 1, wire) for wire in errors] == ["S", "s", "d"]


def test_accounts_are_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 2, clock, max_accounts=4)
    for i in range(4):
        run(limiter, 1, reply(f"n{i}.example."))
    assert len(limiter) == 4
    clock.advance(1.0)  # all four back at full credit: the same as no account
    run(limiter, 2, reply("x.example."))
    assert len(limiter) == 1
    for i in range(3):
        run(limiter, 2, reply(f"m{i}.example."))  # four in debt: nothing to forget
    assert run(limiter, 1, reply("y.example.")) == "S" and len(limiter) == 1


def test_rates_below_zero_are_refused() -> None:
    from jarvis_dns.errors import ConfigError

    with pytest.raises(ConfigError, match="--rrl-rps"):
        RateLimiter(-1, 2, FakeClock())


def test_a_slipped_answer_is_the_header_and_question_with_tc() -> None:
    slipped = dns.message.from_wire(truncated(reply("a.example.")))
    assert slipped.flags & dns.flags.TC and slipped.answer == []
    assert slipped.question[0].to_text() == "a.example. IN A"


# -- whose account ------------------------------------------------------------------


def policy(**settings: object) -> Policy:
    cfg = Config(**settings)  # type: ignore[arg-type]
    return Policy.from_config(cfg, forwarding=False, localnets=list)


@pytest.mark.parametrize(
    ("host", "prefix"),
    [
        ("192.0.2.7", "192.0.2.0/24"),
        ("192.0.2.200", "192.0.2.0/24"),
        ("192.0.3.1", "192.0.3.0/24"),
        ("::ffff:192.0.2.9", "192.0.2.0/24"),
        ("2001:db8:0:ff::1", "2001:db8::/56"),
        ("2001:db8:0:1::2", "2001:db8::/56"),
        ("2001:db8:0:100::1", "2001:db8:0:100::/56"),
        ("fe80::1%eth0", "fe80::/56"),
    ],
)
def test_clients_are_accounted_by_24_and_56(host: str, prefix: str) -> None:
    admission = policy().admit(host)
    assert admission.limited and admission.prefix == prefix


def test_loopback_is_exempt_and_plain_by_default() -> None:
    assert policy().admit("127.0.0.1") is PLAIN
    assert policy().admit("::1") is PLAIN
    assert policy(rrl_exempt=["none"]).admit("127.0.0.1").limited
    assert policy(rrl_rps=0).admit("192.0.2.1") is PLAIN  # RRL off: nothing to do
    exempt = policy(rrl_exempt=["192.0.2.0/25"])
    assert exempt.admit("192.0.2.1") is PLAIN and exempt.admit("192.0.2.129").limited


# -- over a real socket ---------------------------------------------------------------


def _client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _send(sock: socket.socket, port: int, count: int, name: str, rdtype: str = "A") -> None:
    for i in range(count):
        query = dns.message.make_query(name, rdtype)
        query.id = i
        sock.sendto(query.to_wire(), ("127.0.0.1", port))


def _replies(sock: socket.socket) -> list[dns.message.Message]:
    """What came back, read once the server counted every query: it sends a reply
    (into our buffer, on loopback) before it moves on."""
    got = []
    try:
        while True:
            got.append(dns.message.from_wire(sock.recv(4096)))
    except BlockingIOError:
        sock.close()
    return got


def _sorted(replies: list[dns.message.Message]) -> dict[str, int]:
    full = sum(1 for r in replies if r.answer)
    slipped = sum(1 for r in replies if r.flags & dns.flags.TC and not r.answer)
    return {"answered": full, "slipped": slipped}


async def test_a_flood_from_one_source_over_udp() -> None:
    """20 identical queries at one instant with --rrl-rps 5: 5 answered, the other 15
    limited, 8 of them slipped (TC=1, empty) and 7 dropped; TCP is never limited."""
    clock = FakeClock()
    cfg = config(rrl_rps=5, rrl_exempt=["none"])
    async with running(example_registry(), cfg, clock=clock) as server:
        port = server.addresses[0][1]
        sock = _client()
        _send(sock, port, 20, f"auth.{ZONE}")
        await eventually(lambda: server.stats()["queries_udp"] == 20)
        replies = _replies(sock)
        assert _sorted(replies) == {"answered": 5, "slipped": 8} and len(replies) == 13
        stats = server.stats()
        assert (stats["rrl_limited"], stats["rrl_slipped"], stats["rrl_dropped"]) == (15, 8, 7)
        query = dns.message.make_query(f"auth.{ZONE}", "A")
        over_tcp = await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=3)
        assert [rr.to_text() for rr in over_tcp.answer] == [f"auth.{ZONE} 5 IN A 10.0.0.11"]
        clock.advance(WINDOW_S + 1.0)  # the flood's debt is paid: answers resume
        sock = _client()
        _send(sock, port, 1, f"auth.{ZONE}")
        await eventually(lambda: server.stats()["queries_udp"] == 21)
        assert _sorted(_replies(sock)) == {"answered": 1, "slipped": 0}


async def test_loopback_is_never_limited_by_default() -> None:
    async with running(example_registry(), config(rrl_rps=1), clock=FakeClock()) as server:
        sock = _client()
        _send(sock, server.addresses[0][1], 10, f"auth.{ZONE}")
        await eventually(lambda: server.stats()["queries_udp"] == 10)
        assert _sorted(_replies(sock)) == {"answered": 10, "slipped": 0}
        assert server.stats()["rrl_limited"] == 0


async def test_rrl_counters_show_in_health(tmp_path: Path) -> None:
    """The whole server (real clock): the client's own count of what came back and the
    counters /v1/health shows agree."""
    cfg = app_config(tmp_path, rrl_rps=1, rrl_exempt=["none"])
    async with running_app(cfg) as app, httpx.AsyncClient(base_url=app.http_url) as http:
        sock = _client()
        _send(sock, app.dns_addresses[0][1], 10, ZONE, "SOA")

        async def counted() -> dict[str, int] | None:
            dns_stats: dict[str, int] = (await http.get("/v1/health")).json()["dns"]
            return dns_stats if dns_stats["queries_udp"] == 10 else None

        stats = await eventually(counted)
        seen = _sorted(_replies(sock))
    assert stats["rrl_limited"] >= 8  # one answer a second: the flood took well under 2 s
    assert stats["rrl_limited"] == 10 - seen["answered"]
    assert stats["rrl_slipped"] == seen["slipped"]
    assert stats["rrl_dropped"] == stats["rrl_limited"] - seen["slipped"]
