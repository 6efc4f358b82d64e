"""TSIG (RFC 8945): the server's keys, checking signed requests, signing replies.

dnspython does the cryptography and the parsing; this module holds what jarvis-dns
decides: the ``--tsig-key NAME:ALGORITHM:BASE64SECRET`` syntax, which failure gets which
TSIG error (RFC 8945 5.2: an unknown key or algorithm BADKEY, a wrong MAC BADSIG, a
clock outside the fudge BADTIME), and how replies are signed with the request's MAC,
each message of a zone transfer chained to the one before (RFC 8945 5.3.1).
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from jarvis_dns.errors import ConfigError

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}
FUDGE = 300  # RFC 8945 10: seconds of clock difference allowed, 300 recommended
BADSIG, BADKEY, BADTIME = dns.rcode.BADSIG, dns.rcode.BADKEY, dns.rcode.BADTIME
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
Context = Any  # dnspython's running digest between the messages of one transfer


def parse_key(spec: str) -> dns.tsig.Key:
    """``NAME:ALGORITHM:BASE64SECRET`` -> a key; ConfigError naming what is wrong."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise ConfigError("--tsig-key must be NAME:ALGORITHM:BASE64SECRET")
    name, algorithm, secret = parts
    try:
        key_name = dns.name.from_text(name)
    except dns.exception.DNSException:
        raise ConfigError(f"--tsig-key {name!r}: not a DNS name") from None
    if algorithm.lower() not in ALGORITHMS:
        raise ConfigError(
            f"--tsig-key {name}: algorithm must be one of {', '.join(ALGORITHMS)}"
        ) from None
    try:
        raw = base64.b64decode(secret, validate=True)
    except binascii.Error:
        raw = b""
    if not raw:
        raise ConfigError(f"--tsig-key {name}: the secret must be non-empty base64")
    return dns.tsig.Key(key_name, raw, ALGORITHMS[algorithm.lower()])


class Keyring:
    """The --tsig-key keys by name (DNS names compare case-insensitively)."""

    def __init__(self, specs: list[str]) -> None:
        self.keys: dict[dns.name.Name, dns.tsig.Key] = {}
        for spec in specs:
            key = parse_key(spec)
            if key.name in self.keys:
                raise ConfigError(f"--tsig-key {key.name}: given twice")
            self.keys[key.name] = key

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __contains__(self, name: dns.name.Name) -> bool:
        return name in self.keys

    def get(self, name: dns.name.Name) -> dns.tsig.Key | None:
        return self.keys.get(name)


# rcode.to_text would say BADVERS for 16, which TSIG calls BADSIG (RFC 8945 3).
_ERROR_NAMES: dict[int, str] = {BADSIG: "BADSIG", BADKEY: "BADKEY", BADTIME: "BADTIME"}


class TsigFailure(Exception):
    """A signed request that does not verify; ``error`` is the TSIG error to answer."""

    def __init__(self, error: int) -> None:
        super().__init__(_ERROR_NAMES[error])
        self.error = error


@dataclass(frozen=True, slots=True)
class Signer:
    """How a verified request was signed: its replies are signed with its key and MAC."""

    key: dns.tsig.Key
    request_mac: bytes

    @property
    def name(self) -> str:
        """The key's name as --update-allow and --transfer-allow spell it."""
        return key_text(self.key.name)

    def sign(
        self, wire: bytes, now: int, ctx: Context = None, multi: bool = False
    ) -> tuple[bytes, Context]:
        """The reply with its TSIG record; for a transfer, pass each message's context
        on to the next (multi=True)."""
        rdata = _rdata(self.key.algorithm, now, wire, b"")
        signed, ctx = dns.tsig.sign(wire, self.key, rdata, now, self.request_mac, ctx, multi)  # type: ignore[no-untyped-call]
        return with_tsig(wire, self.key.name, signed), ctx


def key_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def verify(wire: bytes, request: dns.message.Message, keyring: Keyring) -> Signer | None:
    """The request's signer; None when it is not signed. Raises TsigFailure.

    ``request`` is ``wire`` parsed without checking its TSIG (keyring=False)."""
    if not request.had_tsig:
        return None
    assert request.keyname is not None
    key = keyring.get(request.keyname)
    if key is None or key.algorithm != request.keyalgorithm:
        raise TsigFailure(BADKEY)
    try:
        dns.message.from_wire(wire, keyring={key.name: key})
    except dns.tsig.BadTime:
        raise TsigFailure(BADTIME) from None
    except (dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        raise TsigFailure(BADKEY) from None
    except (dns.tsig.BadSignature, dns.tsig.PeerError, dns.exception.DNSException):
        raise TsigFailure(BADSIG) from None  # anything else wrong with it: not verified
    return Signer(key, request.mac or b"")


def failure_reply(
    wire: bytes, request: dns.message.Message, keyring: Keyring, error: int, now: int
) -> bytes:
    """RFC 8945 5.2: NOTAUTH with the TSIG error. BADKEY and BADSIG go unsigned (the
    requester's key is not trusted); BADTIME is signed and carries our clock."""
    reply = dns.message.make_response(request)
    reply.set_rcode(dns.rcode.NOTAUTH)
    body = reply.to_wire()
    assert request.keyname is not None and request.keyalgorithm is not None
    key = keyring.get(request.keyname)
    if error == BADTIME and key is not None:
        tsig = request.tsig[0] if request.tsig else None
        signed_at = int(tsig.time_signed) if tsig is not None else now
        other = struct.pack("!HI", now >> 32, now & 0xFFFFFFFF)  # 48-bit server time
        rdata = _rdata(key.algorithm, signed_at, body, b"", error, other)
        signed, _ = dns.tsig.sign(body, key, rdata, signed_at, request.mac)  # type: ignore[no-untyped-call]
        return with_tsig(body, key.name, signed)
    rdata = _rdata(request.keyalgorithm, now, body, b"", error)
    return with_tsig(body, request.keyname, rdata)


def _rdata(
    algorithm: dns.name.Name,
    now: int,
    wire: bytes,
    mac: bytes,
    error: int = 0,
    other: bytes = b"",
) -> dns.rdtypes.ANY.TSIG.TSIG:
    original_id = int.from_bytes(wire[:2], "big")
    return dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        algorithm,
        now,
        FUDGE,
        mac,
        original_id,
        error,
        other,
    )


def with_tsig(wire: bytes, key_name: dns.name.Name, rdata: dns.rdtypes.ANY.TSIG.TSIG) -> bytes:
    """The message with a TSIG record appended (it is always the last one)."""
    data = rdata.to_wire()
    assert data is not None
    record = key_name.to_wire() or b""
    record += _RR_FIXED.pack(dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(data)) + data
    count = int.from_bytes(wire[10:12], "big") + 1
    return wire[:10] + count.to_bytes(2, "big") + wire[12:] + record
