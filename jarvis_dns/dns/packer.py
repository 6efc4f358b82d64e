"""A message writer that compresses names exactly as dnslib does (pure).

The hand encoder (encode.py) must give the very bytes the dnslib path gives, so names
are compressed by dnslib's rule: every suffix of every name written through ``name``
is remembered (by its exact labels) at the offset it was first written, and a later
name that ends in one points there. SRV targets are never compressed nor remembered
(RFC 2782), as in dnslib.
"""

from __future__ import annotations

import struct

from jarvis_dns.dns.proto import CLASS_IN, POINTER, POINTER_SPAN

Labels = tuple[bytes, ...]
_RR = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH


def name_wire(labels: Labels | list[bytes]) -> bytes:
    """A name's uncompressed wire form."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


class Packer:
    __slots__ = ("buf", "names", "question")

    def __init__(self, start: bytes) -> None:
        self.buf = bytearray(start)
        self.names: dict[Labels, int] = {}
        self.question = b""  # the question's name as a pointer, once written

    def name(self, labels: Labels) -> None:
        buf, names = self.buf, self.names
        for i in range(len(labels)):
            suffix = labels[i:]
            at = names.get(suffix)
            if at is not None:
                buf += (POINTER | (at & POINTER_SPAN)).to_bytes(2, "big")
                return
            names[suffix] = len(buf)
            label = labels[i]
            buf.append(len(label))
            buf += label
        buf.append(0)

    def record(self, owner: Labels, rtype: int, ttl: int, rdata: bytes) -> None:
        """A record whose data holds no compressible name (A, AAAA, TXT, SRV, HINFO)."""
        self.name(owner)
        self.buf += _RR.pack(rtype, CLASS_IN, ttl, len(rdata))
        self.buf += rdata

    def open(self, owner: Labels | None, rtype: int, ttl: int) -> int:
        """The start of a record whose data is written next; ``close`` sets its length.
        An owner of None is the question's name."""
        if owner is None:
            self.buf += self.question
        else:
            self.name(owner)
        self.buf += _RR.pack(rtype, CLASS_IN, ttl, 0)
        return len(self.buf)

    def close(self, start: int) -> None:
        self.buf[start - 2 : start] = (len(self.buf) - start).to_bytes(2, "big")
