"""`jarvis-dns lookup`: the small dig."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket

from dns_helpers import (
    ZONE,
    dns_path,  # noqa: F401  (autouse: every path)
    example_registry,
    running,
)
from ledger import Ledger

from jarvis_dns.dns.lookup import EXIT_NO_REPLY, EXIT_OK, EXIT_USAGE, lookup_main
from jarvis_dns.models import InstanceSpec


def _lookup(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lookup_main(argv)
    return code, out.getvalue()


async def test_prints_a_dig_like_reply() -> None:
    async with running(example_registry()) as server:
        port = server.addresses[0][1]
        code, out = await asyncio.to_thread(
            _lookup, [f"_auth._tcp.{ZONE}", "srv", "--server", f"127.0.0.1:{port}"]
        )
    assert code == EXIT_OK
    assert "status: NOERROR" in out and "flags: qr aa rd" in out
    assert f"SRV     10 1 8443 2.auth.{ZONE}" in out
    assert f"SERVER: 127.0.0.1#{port}(UDP)" in out


async def test_short_output_and_nxdomain() -> None:
    async with running(example_registry()) as server:
        at = f"127.0.0.1:{server.addresses[0][1]}"
        short = await asyncio.to_thread(_lookup, [f"auth.{ZONE}", "--short", "--server", at])
        missing = await asyncio.to_thread(_lookup, [f"nope.{ZONE}", "--server", at])
    assert short == (EXIT_OK, "10.0.0.11\n")
    assert missing[0] == EXIT_OK and "status: NXDOMAIN" in missing[1]


async def test_truncated_answers_are_repeated_over_tcp() -> None:
    reg = Ledger(clock=lambda: 0.0)
    for i in range(100):
        reg.register(InstanceSpec("big", i, f"10.1.0.{i}", 80))
    async with running(reg) as server:
        at = f"127.0.0.1:{server.addresses[0][1]}"
        code, out = await asyncio.to_thread(_lookup, [f"_big._tcp.{ZONE}", "SRV", "--server", at])
    assert code == EXIT_OK and "(TCP)" in out and "ANSWER: 100" in out


def test_bad_arguments_and_no_server() -> None:
    assert _lookup(["x.", "NOTATYPE"])[0] == EXIT_USAGE
    assert _lookup(["x.", "--server", "127.0.0.1:99999"])[0] == EXIT_USAGE
    assert _lookup([])[0] == EXIT_USAGE
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        at = f"127.0.0.1:{silent.getsockname()[1]}"
        code, out = _lookup(["x.", "--server", at, "--timeout", "0.2"])
    assert code == EXIT_NO_REPLY and "no servers could be reached" in out
