"""DNS over TCP and over TLS (RFC 7766, RFC 7858) on real sockets: connection caps per
client address and in all (clients bound to 127.0.0.1, .2, .3), DNS over TLS with the
HTTP certificate of a throwaway CA, its idle timeout, and --dot without a certificate."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import struct
from pathlib import Path

import dns.asyncquery
import dns.message
import httpx
from conftest import app_config, eventually, running_app, serve_refused
from dns_helpers import ZONE, ask, config, example_registry, running
from pki import Pki, needs_openssl

from jarvis_dns.security import dot_tls

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
README = Path(__file__).resolve().parents[1] / "README.md"
AUTH = [f"auth.{ZONE} 5 IN A 10.0.0.11"]


async def _connect(
    address: tuple[str, int], source: str, tls: ssl.SSLContext | None = None
) -> Stream:
    host, port = address
    hostname = "localhost" if tls else None
    return await asyncio.open_connection(
        host, port, local_addr=(source, 0), ssl=tls, server_hostname=hostname
    )


async def _answer(stream: Stream, name: str = f"auth.{ZONE}") -> list[str]:
    """One query over an open connection; the answer's records."""
    reader, writer = stream
    wire = dns.message.make_query(name, "A").to_wire()
    writer.write(struct.pack("!H", len(wire)) + wire)
    async with asyncio.timeout(5):
        (size,) = struct.unpack("!H", await reader.readexactly(2))
        reply = dns.message.from_wire(await reader.readexactly(size))
    return [line for rrset in reply.answer for line in rrset.to_text().splitlines()]


async def _closed_by_server(stream: Stream) -> bool:
    """True once the server has closed the connection (end of stream)."""
    async with asyncio.timeout(5):
        return await stream[0].read() == b""


async def test_a_client_over_its_cap_is_closed_at_once_others_are_served() -> None:
    async with running(example_registry(), config(dns_tcp_max_per_client=3)) as server:
        address = server.addresses[0]
        held = [await _connect(address, "127.0.0.1") for _ in range(3)]
        assert [await _answer(s) for s in held] == [AUTH] * 3
        extra = await _connect(address, "127.0.0.1")
        assert await _closed_by_server(extra)
        other = await ask(server, f"auth.{ZONE}", "A", "tcp", source="127.0.0.2")
        assert other.answer == [f"auth.{ZONE} 5 A 10.0.0.11"]
        assert server.stats()["tcp_rejected"] == 1
        held[0][1].close()  # one leaves: its place is free again
        await eventually(lambda: server.stats()["tcp_open"] == 2)
        again = await _connect(address, "127.0.0.1")
        assert await _answer(again) == AUTH
        for _, writer in [*held[1:], again, extra]:
            writer.close()


async def test_the_total_cap_holds_across_clients() -> None:
    cfg = config(dns_tcp_max_connections=2)
    async with running(example_registry(), cfg) as server:
        address = server.addresses[0]
        first, second = await _connect(address, "127.0.0.1"), await _connect(address, "127.0.0.2")
        assert [await _answer(first), await _answer(second)] == [AUTH, AUTH]
        third = await _connect(address, "127.0.0.3")
        assert await _closed_by_server(third)
        for _, writer in (first, second, third):
            writer.close()


# -- DNS over TLS ---------------------------------------------------------------------


def _client_tls(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


@needs_openssl
async def test_dns_over_tls_serves_the_http_certificate(tmp_path: Path, pki: Pki) -> None:
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    cfg = app_config(tmp_path, dot=["127.0.0.1:0"], **tls)
    async with running_app(cfg) as app, httpx.AsyncClient(verify=_client_tls(pki)) as http:
        body = {"service_type": "auth", "instance_id": 1, "host": "10.0.0.11", "port": 8443}
        assert (await http.post(app.http_url + "/v1/instances", json=body)).status_code == 201
        host, port = app.dns.dot_addresses[0]
        query = dns.message.make_query(f"auth.{ZONE}", "A")
        ours = _client_tls(pki)
        reply = await dns.asyncquery.tls(
            query, host, port=port, ssl_context=ours, server_hostname="localhost", timeout=5
        )
        assert [rr.to_text() for rr in reply.answer] == [f"auth.{ZONE} 5 IN A 10.0.0.11"]
        try:  # the system's CAs do not know ours
            await dns.asyncquery.tls(query, host, port=port, server_hostname="localhost", timeout=5)
            raise AssertionError("an unknown CA was accepted")
        except ssl.SSLCertVerificationError:
            pass
        assert app.dns.stats()["tls_connections"] >= 1
        printed = await asyncio.to_thread(_readme_snippet, pki, port)
        assert f"auth.{ZONE} 5 IN A 10.0.0.11" in printed


def _readme_snippet(pki: Pki, port: int) -> str:
    """README's DNS over TLS example, run with the test's CA, port and host name."""
    section = README.read_text().split("**DNS over TLS** (RFC 7858)")[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    code = code.replace('"ca.pem"', repr(str(pki.ca))).replace("port=853", f"port={port}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code.replace('"registry"', '"localhost"'), {})
    return out.getvalue()


@needs_openssl
async def test_dns_over_tls_has_the_caps_and_idle_timeout_of_tcp(pki: Pki) -> None:
    """One connection per client, TCP and TLS together; an idle TLS connection closes."""
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    cfg = config(dot=["127.0.0.1:0"], dns_tcp_max_per_client=1, **tls)
    async with running(example_registry(), cfg, tls=dot_tls(cfg), tcp_idle_s=0.5) as server:
        over_tcp = await _connect(server.addresses[0], "127.0.0.1")
        assert await _answer(over_tcp) == AUTH
        over_tls = await _connect(server.dot_addresses[0], "127.0.0.1", _client_tls(pki))
        assert await _closed_by_server(over_tls)  # 127.0.0.1 already holds its one
        other = await _connect(server.dot_addresses[0], "127.0.0.2", _client_tls(pki))
        assert await _answer(other) == AUTH
        assert await _closed_by_server(other)  # then idle for 0.5 s: closed
        assert server.stats()["tcp_rejected"] == 1
        for _, writer in (over_tcp, over_tls, other):
            writer.close()


def test_dot_without_a_certificate_is_a_one_line_error(tmp_path: Path) -> None:
    assert serve_refused(tmp_path, "--dot", "127.0.0.1:0") == [
        "jarvis-dns: --dot needs --tls-cert and --tls-key: the certificate it serves"
    ]
