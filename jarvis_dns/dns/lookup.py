"""``jarvis-dns lookup NAME [TYPE]``: a small dig for machines without one.

Asks over UDP with EDNS(0) and retries over TCP when the answer is truncated, like dig;
prints the reply in dig's layout. Exit status as dig's: 0 for any reply, 9 when no
server answered, 1 for a bad argument.
"""

from __future__ import annotations

import argparse
import socket
import time

from dnslib import EDNS0, QTYPE, RCODE, DNSError, DNSQuestion, DNSRecord

from jarvis_dns.config import split_hostport
from jarvis_dns.dns.proto import frame_size, framed
from jarvis_dns.errors import ConfigError

DEFAULT_PORT = 9053  # jarvis-dns, not 53: the tool asks this registry by default
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT_S = 5.0  # dig's default
EDNS_SIZE = 1232  # what we advertise; the same as the server's default limit
EXIT_OK, EXIT_USAGE, EXIT_NO_REPLY = 0, 1, 9


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jarvis-dns lookup", description=__doc__.splitlines()[0])
    p.add_argument("name", help="name to look up, e.g. _web._tcp.jarvis.internal")
    p.add_argument("type", nargs="?", default="A", help="record type (default A)")
    p.add_argument("--server", default=DEFAULT_SERVER, help="host:port (default %(default)s)")
    p.add_argument("--tcp", action="store_true", help="ask over TCP from the start")
    p.add_argument("--short", action="store_true", help="print only the answers' data")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    return p


def build_query(name: str, qtype: str) -> DNSRecord:
    code = getattr(QTYPE, qtype.upper())  # raises for an unknown type
    query = DNSRecord(q=DNSQuestion(name, code))
    query.add_ar(EDNS0(udp_len=EDNS_SIZE))
    return query


def ask_udp(wire: bytes, server: tuple[str, int], timeout: float) -> bytes:
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(server)
        sock.send(wire)
        while True:
            reply = sock.recv(65535)
            if reply[:2] == wire[:2]:
                return reply


def ask_tcp(wire: bytes, server: tuple[str, int], timeout: float) -> bytes:
    with socket.create_connection(server, timeout=timeout) as sock:
        sock.sendall(framed(wire))
        size = frame_size(_read(sock, 2))
        return _read(sock, size)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        data += chunk
    return data


def lookup(
    name: str, qtype: str, server: tuple[str, int], tcp: bool = False, timeout: float = 5.0
) -> tuple[DNSRecord, str]:
    """The parsed reply and the transport that carried it."""
    wire = build_query(name, qtype).pack()
    if not tcp:
        reply = DNSRecord.parse(ask_udp(wire, server, timeout))
        if not reply.header.tc:
            return reply, "UDP"
    return DNSRecord.parse(ask_tcp(wire, server, timeout)), "TCP"


def service_questions(service_type: str, zone: str, ids: list[str]) -> list[DNSRecord]:
    """What a client asks of one service: SRV and A of it, TXT of each instance."""
    asked = [(f"_{service_type}._tcp.{zone}", "SRV"), (f"{service_type}.{zone}", "A")]
    asked += [(f"{iid}._{service_type}._tcp.{zone}", "TXT") for iid in ids]
    return [build_query(name, qtype) for name, qtype in asked]


def presented(query: DNSRecord, reply: bytes | None) -> dict[str, object]:
    """A question and its reply's sections, one record a line as dig prints them."""
    q = query.questions[0]
    shown: dict[str, object] = {"name": str(q.qname), "type": QTYPE[q.qtype]}
    if reply is None:
        return {**shown, "rcode": "no answer", "answer": [], "additional": []}
    parsed = DNSRecord.parse(reply)
    return {
        **shown,
        "rcode": RCODE[parsed.header.rcode],
        "answer": [rr.toZone() for rr in parsed.rr],
        "additional": [rr.toZone() for rr in parsed.ar if rr.rtype != QTYPE.OPT],
    }


def _print(reply: DNSRecord, server: tuple[str, int], transport: str, ms: float) -> None:
    print(reply)
    print()
    print(f";; Query time: {ms:.0f} msec")
    print(f";; SERVER: {server[0]}#{server[1]}({transport})")
    print(f";; MSG SIZE  rcvd: {len(reply.pack())}")


def lookup_main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        server = split_hostport(args.server, DEFAULT_PORT)
        start = time.perf_counter()
        reply, transport = lookup(args.name, args.type, server, args.tcp, args.timeout)
    except (ConfigError, DNSError, UnicodeError) as exc:
        print(f"jarvis-dns lookup: {exc}")
        return EXIT_USAGE
    except OSError as exc:  # timeouts and refused connections alike
        print(f";; connection timed out; no servers could be reached ({exc or 'timeout'})")
        return EXIT_NO_REPLY
    if args.short:
        for record in reply.rr:
            print(record.rdata.toZone())
    else:
        _print(reply, server, transport, (time.perf_counter() - start) * 1000)
    return EXIT_OK
