"""docs/dns.md is true: its dig (and jarvis-dns lookup) examples give exactly the output
shown, and its dnsmasq snippet really routes the zone to jarvis-dns."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from dns_helpers import (
    dns_path,  # noqa: F401  (autouse: every path)
    dnsmasq,
    example_registry,
    running,
)

from jarvis_dns.dns.lookup import lookup_main

DOC = Path(__file__).resolve().parent.parent / "docs" / "dns.md"
DIG = "/usr/bin/dig"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
DOC_PORT = "9053"

needs_dig = pytest.mark.skipif(not Path(DIG).exists(), reason="dig is not installed (dnsutils)")


def examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) from every ```console block, in order."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


def _normal(lines: list[str]) -> list[str]:
    # Message IDs are random; whitespace between columns is dig's business.
    out = [" ".join(re.sub(r"id: \d+", "id: N", line).split()) for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


def _run(command: str, port: int) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "dig":
        argv = [DIG, *[str(port) if a == DOC_PORT else a for a in argv[1:]]]
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.splitlines()
    assert argv[:2] == ["jarvis-dns", "lookup"], command
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert lookup_main([*argv[2:], "--server", f"127.0.0.1:{port}"]) == 0
    return out.getvalue().splitlines()


def test_the_docs_show_every_row_of_the_naming_table() -> None:
    commands = " ".join(c for c, _ in examples())
    for needle in ["_auth._tcp.jarvis.internal SRV", "_auth._tcp.jarvis.internal PTR",
                   "1._auth._tcp.jarvis.internal SRV", "1._auth._tcp.jarvis.internal TXT",
                   "auth.jarvis.internal A", "auth.jarvis.internal AAAA",
                   "2.auth.jarvis.internal A", "2.auth.jarvis.internal TXT",
                   "._sub._auth._tcp.jarvis.internal PTR", "._sub._auth._tcp.jarvis.internal SRV",
                   "_services._dns-sd._udp.jarvis.internal PTR", "jarvis.internal SOA",
                   "jarvis.internal NS"]:  # fmt: skip
        assert needle in commands


@needs_dig
async def test_dig_answers_exactly_as_the_docs_show() -> None:
    async with running(example_registry()) as server:
        port = server.addresses[0][1]
        for command, expected in examples():
            got = await asyncio.to_thread(_run, command, port)
            assert _normal(got) == _normal(expected), command


def _dig(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def _doc_dnsmasq_line() -> str:
    lines = [ln for ln in DOC.read_text().splitlines() if ln.startswith("server=/")]
    assert lines == ["server=/jarvis.internal/127.0.0.1#9053"]
    return lines[0]


@needs_dig
@pytest.mark.skipif(not Path(DNSMASQ).exists(), reason="dnsmasq is not installed")
async def test_the_dnsmasq_snippet_routes_the_zone_to_jarvis_dns() -> None:
    async with running(example_registry()) as server:
        snippet = _doc_dnsmasq_line().replace(f"#{DOC_PORT}", f"#{server.addresses[0][1]}")
        # dnsmasq() yields once dnsmasq answers: dig's tries against a port not yet bound are
        # all refused within milliseconds.
        async with dnsmasq(DNSMASQ, f"--{snippet}") as port:
            dig = [DIG, "@127.0.0.1", "-p", str(port), "+short", "+tries=3", "+timeout=2"]
            a = await asyncio.to_thread(_dig, [*dig, "auth.jarvis.internal", "A"])
            srv = await asyncio.to_thread(_dig, [*dig, "_auth._tcp.jarvis.internal", "SRV"])
    assert a.split() == ["10.0.0.11"]
    assert len(srv.splitlines()) == 3
