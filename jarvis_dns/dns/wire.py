"""The fast path: replies from a cache of encoded messages, no dnslib per query (pure).

A standard query (one question, at most an OPT without options) is looked up by its
own bytes after the ID: the counts, the question as spelled and the OPT. A hit is the
cached reply with the query's ID put in front. A miss parses the question by hand,
looks for the same question lower-cased, and only when that is new asks the dnslib
path (``encode``) for every rotation of the answer; those replies are stored without
ID, flags and question, and spelled out for each new spelling (0x20 case, RD bit).

Anything else (other opcodes or counts, EDNS options or versions, compression in the
question, trailing bytes, forwarded names) makes ``answer`` return None, and the
caller takes the dnslib path, which answers it exactly as before. ``clear`` empties
the cache; the responder calls it on every registry change and zone reload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

HEADER = 12  # RFC 1035 4.1.1: ID, flags, four counts
_QR_OPCODE = 0xF8  # in flags byte 2: a standard query has QR=0 and opcode 0
_RD = 0x01  # in flags byte 2; the only flag a reply echoes
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT_TYPE = b"\x00\x29"
_OPT_SIZE = 11  # RFC 6891 6.1.2: root owner, type, class, TTL, RDLENGTH 0
_NO_OPTIONS = b"\x00\x00"
MAX_LABEL = 63  # RFC 1035 2.3.4; 0x40 and above are pointers or extended labels
MAX_NAME = 255  # RFC 1035 2.3.4, in wire form
# A/AAAA rotation: at most this many pre-encoded orders per question. Each reply leads
# with another address; past this many addresses some never lead, which resolvers
# caching the answer for its TTL would blur anyway.
RING = 8
# Distinct questions (and spellings of them) kept between registry changes; a scan of
# random names would otherwise grow the cache without end. Past this it starts over.
MAX_QUESTIONS = 50_000
MAX_SPELLINGS = 50_000
# And a bound on their bytes: a rotated 1232-byte answer is ~20 KiB once spelled out,
# and EDNS sizes or 0x20 spellings could be varied to make many.
MAX_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Encoded:
    """The dnslib path's replies to one query, one per rotation step, and what they count."""

    replies: Sequence[bytes]
    counters: tuple[str, ...] = ()  # stats each of these replies bumps (nxdomain, ...)


Encoder = Callable[[bytes], "Encoded | None"]


class _Question:
    """One lower-cased question: its replies without ID, flags and question."""

    __slots__ = ("counters", "flags", "tails", "turn")

    def __init__(self, encoded: Encoded, question_end: int) -> None:
        first = encoded.replies[0]
        flags = first[2] & ~_RD
        self.flags = (bytes([flags]) + first[3:HEADER], bytes([flags | _RD]) + first[3:HEADER])
        self.tails = tuple(reply[question_end:] for reply in encoded.replies)
        self.counters = encoded.counters
        # The rotation step, shared by every spelling: a 0x20 resolver spells each query
        # anew, and would otherwise always get the first order.
        self.turn = 0

    def spelled(self, question: bytes) -> _Spelling:
        rings = tuple(tuple(flags + question + tail for tail in self.tails) for flags in self.flags)
        return _Spelling(self, rings)


class _Spelling:
    """One query as sent, minus its ID: whole replies minus the ID, by RD bit."""

    __slots__ = ("counters", "question", "rings")

    def __init__(self, question: _Question, rings: tuple[tuple[bytes, ...], ...]) -> None:
        self.question = question
        self.rings = rings
        self.counters = question.counters

    def size(self) -> int:
        return sum(len(reply) for ring in self.rings for reply in ring)


_FALLBACK = object()  # cache marker: this question goes the dnslib way (forwarded)


class FastPath:
    def __init__(self, encode: Encoder, counts: dict[str, int], counter: str) -> None:
        """encode: the dnslib path for a query; counts: the stats; counter: per query."""
        self._encode = encode
        self._counts = counts
        self._counter = counter
        self._spellings: dict[bytes, _Spelling] = {}
        self._questions: dict[bytes, _Question | object] = {}
        self._bytes = 0  # held by both, roughly

    def clear(self, *_: object) -> None:
        self._spellings.clear()
        self._questions.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._questions)

    def answer(self, data: bytes) -> bytes | None:
        """The reply to a query, or None when the dnslib path must answer it."""
        spelling = self._spellings.get(data[4:])
        if spelling is None or data[2] & _QR_OPCODE:
            spelling = self._learn(data)
            if spelling is None:
                return None
        counts = self._counts
        counts[self._counter] += 1
        for name in spelling.counters:
            counts[name] += 1
        ring = spelling.rings[data[2] & _RD]
        if len(ring) == 1:
            return data[:2] + ring[0]
        question = spelling.question
        turn = question.turn
        question.turn = (turn + 1) % len(ring)
        return data[:2] + ring[turn]

    def _learn(self, data: bytes) -> _Spelling | None:
        ends = question_ends(data)
        if ends is None:
            return None
        name_end, question_end = ends
        key = data[4:HEADER] + data[HEADER:name_end].lower() + data[name_end:]
        question = self._questions.get(key)
        if question is None:
            encoded = self._encode(data)
            if encoded is None or not encoded.replies:
                question = _FALLBACK
            else:
                question = _Question(encoded, question_end)
            self._make_room(sum(len(reply) for reply in encoded.replies) if encoded else 0)
            self._questions[key] = question
        if not isinstance(question, _Question):
            return None
        spelling = question.spelled(data[HEADER:question_end])
        if len(self._spellings) >= MAX_SPELLINGS:
            self._spellings.clear()
        self._make_room(spelling.size())
        self._spellings[data[4:]] = spelling
        return spelling

    def _make_room(self, size: int) -> None:
        """Start over when the cache would pass MAX_QUESTIONS or MAX_BYTES."""
        if len(self._questions) >= MAX_QUESTIONS or self._bytes + size > MAX_BYTES:
            self.clear()
        self._bytes += size


def question_ends(data: bytes) -> tuple[int, int] | None:
    """(end of qname, end of question) of a query the fast path may answer, else None.

    Accepted: QR=0, opcode QUERY, QDCOUNT 1, no answer or authority records, and either
    nothing after the question or exactly one OPT of version 0 without options.
    """
    size = len(data)
    if size < HEADER + 5 or data[2] & _QR_OPCODE:
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
    if counts == _ONE_QUESTION:
        return (name_end, question_end) if size == question_end else None
    if size != question_end + _OPT_SIZE or not _plain_opt(data, question_end):
        return None
    return name_end, question_end


def _plain_opt(data: bytes, at: int) -> bool:
    """An OPT RR at ``at``: root owner, EDNS version 0, no options."""
    return (
        data[at] == 0
        and data[at + 1 : at + 3] == _OPT_TYPE
        and data[at + 6] == 0  # version; BADVERS is the dnslib path's business
        and data[at + 9 : at + 11] == _NO_OPTIONS
    )


def name_wire(labels: Sequence[bytes]) -> bytes:
    """A name's uncompressed wire form."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def with_question_name(reply: bytes, name: bytes) -> bytes:
    """The reply with its question's name (at offset 12) spelled as ``name``.

    Used by the dnslib path, which packs the lower-cased name and then puts the client's
    case back, so that both paths give the very same bytes (names compressed into the
    question read back in the client's case, which DNS compares without).
    """
    return reply[:HEADER] + name + reply[HEADER + len(name) :]
