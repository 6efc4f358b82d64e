"""Wire facts of DNS messages, in one place: sizes, flag bits, type codes, framing (pure)."""

from __future__ import annotations

import struct

HEADER = 12  # RFC 1035 4.1.1: ID, flags, four counts
# RFC 1035 4.2.1: without EDNS(0) a UDP message is at most 512 bytes, and RFC 6891
# 6.2.5 says a smaller advertised EDNS size is treated as 512.
CLASSIC_UDP = 512
TCP_MAX = 65535  # RFC 1035 4.2.2: the two-byte length prefix
MAX_LABEL = 63  # RFC 1035 2.3.4; 0x40 and above are pointers or extended labels
MAX_NAME = 255  # RFC 1035 2.3.4, in wire form
EDNS_VERSION = 0
BADVERS = 16  # RFC 6891: extended rcode 16, carried as 1 in the OPT's upper bits

# Flags, byte 2 of the header.
QR = 0x80
OPCODE_MASK = 0x78
AA = 0x04
TC = 0x02
RD = 0x01
# Flags, byte 3 of the header.
RA = 0x80

# Types and classes this server encodes by hand (RFC 1035 3.2.2, RFC 2782, RFC 3596).
A, NS, SOA, PTR, HINFO, TXT, AAAA, SRV, OPT = 1, 2, 6, 12, 13, 16, 28, 33, 41
ANY = 255
CLASS_IN, CLASS_ANY = 1, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

POINTER = 0xC000  # RFC 1035 4.1.4: the top two bits of a compression pointer
POINTER_SPAN = 0x3FFF  # the offsets a pointer can reach


_LENGTH = struct.Struct("!H")


def framed(wire: bytes) -> bytes:
    """RFC 1035 4.2.2 / RFC 7766: a message over TCP, after its two-byte length."""
    return _LENGTH.pack(len(wire)) + wire


def frame_size(prefix: bytes) -> int:
    """The length a TCP message's two-byte prefix announces."""
    return int(_LENGTH.unpack(prefix)[0])


def is_reply_to(data: bytes, query_id: bytes) -> bool:
    return len(data) >= HEADER and data[:2] == query_id and bool(data[2] & QR)


def question_end(wire: bytes) -> int:
    """Just past a message's first question (its name uncompressed, as queries and this
    server's replies write it); HEADER when it has none. Raises IndexError on a cut one."""
    if wire[4:6] == b"\x00\x00":
        return HEADER
    at = HEADER
    while wire[at]:
        if wire[at] > MAX_LABEL:
            raise IndexError("compressed or extended label in the question")
        at += wire[at] + 1
    if at + 5 > len(wire):
        raise IndexError("question cut short")
    return at + 5


def without_ra(wire: bytes) -> bytes:
    """The reply with RA=0: for a client that may not recurse through us."""
    return wire[:3] + bytes([wire[3] & ~RA & 0xFF]) + wire[4:]


def truncated(wire: bytes) -> bytes:
    """The reply cut to its header and question, TC=1 (RRL's slip: a real client asks
    again over TCP; a spoofed victim gets no more bytes than the query had)."""
    end = question_end(wire)
    return wire[:2] + bytes([wire[2] | TC]) + wire[3:6] + bytes(6) + wire[HEADER:end]
