"""``classify``: is a message a standard query this server answers without dnslib? (pure)

The one acceptance check of both the answer cache and the hand encoder. Accepted: QR=0,
opcode QUERY, QDCOUNT 1, no answer or authority records, a question without compression,
and either nothing after it or exactly one OPT of EDNS version 0 without options.
Anything else is unusual and goes the dnslib way, which answers it exactly as before
(FORMERR, NOTIMP, BADVERS, EDNS options, forwarding ...).
"""

from __future__ import annotations

from typing import NamedTuple

from jarvis_dns.dns.proto import HEADER, MAX_LABEL, MAX_NAME, OPCODE_MASK, OPT, QR, RD

_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT_TYPE = OPT.to_bytes(2, "big")
_OPT_SIZE = 11  # RFC 6891 6.1.2: root owner, type, class, TTL, RDLENGTH 0
_NO_OPTIONS = b"\x00\x00"


class Query(NamedTuple):
    """A standard query, as far as answering it needs (a tuple: made for every query
    the answer cache misses, and a frozen dataclass costs 2 us to make)."""

    data: bytes
    name_end: int  # just past the question's name
    question_end: int  # just past its type and class
    qtype: int
    qclass: int
    edns: bool  # an OPT record came with it
    size: int  # the OPT's advertised UDP size (0 without one)
    lower_name: bytes  # the question's name in wire form, lower-cased (ASCII, as DNS folds)

    @property
    def key(self) -> bytes:
        """What the answer depends on: counts, the question lower-cased, the OPT."""
        data = self.data
        return data[4:HEADER] + self.lower_name + data[self.name_end :]

    @property
    def rd(self) -> bool:
        return bool(self.data[2] & RD)

    def labels(self) -> list[bytes]:
        """The lower-cased labels of the question's name."""
        data, at, out = self.data, HEADER, []
        while data[at]:
            out.append(data[at + 1 : at + 1 + data[at]].lower())
            at += data[at] + 1
        return out


def classify(data: bytes) -> Query | None:
    """The query when it is a standard one, else None (the dnslib path answers it)."""
    size = len(data)
    if size < HEADER + 5 or data[2] & (QR | OPCODE_MASK):
        return None
    counts = data[4:HEADER]
    if counts != _ONE_QUESTION and counts != _ONE_QUESTION_OPT:
        return None
    at = HEADER
    while True:
        if at >= size or at - HEADER >= MAX_NAME:
            return None
        length = data[at]
        if length == 0:
            break
        if length > MAX_LABEL:
            return None
        at += length + 1
    name_end = at + 1
    question_end = name_end + 4
    if question_end > size:
        return None
    qtype = int.from_bytes(data[name_end : name_end + 2], "big")
    qclass = int.from_bytes(data[name_end + 2 : question_end], "big")
    if counts == _ONE_QUESTION:
        if size != question_end:
            return None
        lower = data[HEADER:name_end].lower()
        return Query(data, name_end, question_end, qtype, qclass, False, 0, lower)
    if size != question_end + _OPT_SIZE or not _plain_opt(data, question_end):
        return None
    udp_size = int.from_bytes(data[question_end + 3 : question_end + 5], "big")
    lower = data[HEADER:name_end].lower()
    return Query(data, name_end, question_end, qtype, qclass, True, udp_size, lower)


def _plain_opt(data: bytes, at: int) -> bool:
    """An OPT RR at ``at``: root owner, EDNS version 0, no options."""
    return (
        data[at] == 0
        and data[at + 1 : at + 3] == _OPT_TYPE
        and data[at + 6] == 0  # version; BADVERS is the dnslib path's business
        and data[at + 9 : at + 11] == _NO_OPTIONS
    )
