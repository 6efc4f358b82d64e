"""The answer cache: encoded replies by question, dropped by what they depend on (pure).

A query is looked up by its own bytes after the ID (counts, the question as spelled,
the OPT); a hit is the cached reply with the query's ID put in front. Replies are
stored per lower-cased question without ID, flags and question, and spelled out for
each new spelling (0x20 case, RD bit). A rotated answer (A/AAAA of a service) or a
limited one (--udp-answer-limit) has up to ``RING`` replies, encoded lazily as the
turns come round.

Each question carries its scope (encode.py): ``drop`` forgets the questions of the
scopes a registry change touched and nothing else. Replies carrying the SOA serial
(negative answers, the SOA itself) are not dropped when only the serial moved: the
serial is patched in on the next hit.

A hit counts itself: one int added in ``hits`` (metrics.dns), by the reply's outcome,
and one in its question, whose scope names the service it answered for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from jarvis_dns.dns.encode import Made
from jarvis_dns.dns.proto import HEADER, OPCODE_MASK, QR, RD
from jarvis_dns.metrics.dns import OUTCOMES

# A/AAAA rotation: at most this many pre-encoded orders per question. Each reply leads
# with another address; past this many addresses some never lead, which resolvers
# caching the answer for its TTL would blur anyway.
RING = 8
# Distinct questions (and spellings of them) kept; a scan of random names would
# otherwise grow the cache without end. Past this it starts over.
MAX_QUESTIONS = 50_000
MAX_SPELLINGS = 50_000
# And a bound on their bytes: a rotated 1232-byte answer is ~20 KiB once spelled out,
# and EDNS sizes or 0x20 spellings could be varied to make many.
MAX_BYTES = 64 << 20
_NOT_STANDARD = QR | OPCODE_MASK

Maker = Callable[[int], Made]  # the reply for a turn


class _Question:
    """One lower-cased question: its replies without ID, flags and question."""

    __slots__ = (
        "answers",
        "flags",
        "make",
        "outcome",
        "question_end",
        "scope",
        "serial",
        "serial_at",
        "spellings",
        "tails",
        "turn",
        "turns",
    )

    def __init__(self, made: Made, question_end: int, make: Maker, serial: int) -> None:
        first = made.reply
        flags = first[2] & ~RD
        self.flags = (bytes([flags]) + first[3:HEADER], bytes([flags | RD]) + first[3:HEADER])
        steps = min(made.cycle, RING)
        self.turns = [i * made.cycle // steps for i in range(steps)]
        self.tails: list[bytes | None] = [first[question_end:], *([None] * (steps - 1))]
        self.outcome = made.outcome
        self.scope = made.scope
        self.answers = 0  # replies made from it: the service's DNS answers, for metrics
        self.make = make
        self.question_end = question_end
        # Offset of the SOA serial in a tail, and the serial it holds.
        self.serial_at = made.serial_at - question_end if made.serial_at >= 0 else -1
        self.serial = serial
        self.spellings: list[bytes] = []
        # The rotation step, shared by every spelling: a 0x20 resolver spells each query
        # anew, and would otherwise always get the first order.
        self.turn = 0

    def tail(self, step: int) -> bytes:
        tail = self.tails[step]
        if tail is None:
            tail = self.make(self.turns[step]).reply[self.question_end :]
            self.tails[step] = tail
        return tail


class _Spelling:
    """One query as sent, minus its ID: whole replies minus the ID, by RD bit."""

    __slots__ = ("question", "rings", "serial", "spelled")

    def __init__(self, question: _Question, spelled: bytes) -> None:
        self.question = question
        self.spelled = spelled  # the question section as the client spelled it
        steps = len(question.tails)
        self.rings: tuple[list[bytes | None], list[bytes | None]] = ([None] * steps, [None] * steps)
        self.serial = question.serial

    def reply(self, rd: int, step: int) -> bytes:
        ring = self.rings[rd]
        reply = ring[step]
        if reply is None:
            q = self.question
            reply = q.flags[rd] + self.spelled + q.tail(step)
            ring[step] = reply
        return reply


_FALLBACK = object()  # cache marker: this question goes the dnslib way (forwarded)


class AnswerCache:
    def __init__(self, hits: list[int] | None = None) -> None:
        """hits: where hits are counted, by outcome (one of DnsCounts.hits)."""
        self.serial = 0  # the SOA serial now; replies holding an older one are patched
        self.hits = hits if hits is not None else [0] * len(OUTCOMES)
        self._retired: dict[str, int] = {}  # answers of questions dropped, by scope
        self._spellings: dict[bytes, _Spelling] = {}
        self._questions: dict[bytes, _Question | object] = {}
        self._scopes: dict[str, list[bytes]] = {}
        self._bytes = 0  # held by both, roughly

    def clear(self) -> None:
        for question in self._questions.values():
            self._retire(question)
        self._spellings.clear()
        self._questions.clear()
        self._scopes.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._questions)

    def hit(self, data: bytes) -> bytes | None:
        """The cached reply to a query, or None (a miss, or not a standard query)."""
        spelling = self._spellings.get(data[4:])
        if spelling is None or data[2] & _NOT_STANDARD:
            return None
        question = spelling.question
        if question.serial_at >= 0 and spelling.serial != self.serial:
            self._patch(spelling)
        self.hits[question.outcome] += 1
        question.answers += 1
        rd = data[2] & RD
        steps = len(question.tails)
        if steps == 1:
            reply = spelling.rings[rd][0]
            if reply is None:
                reply = spelling.reply(rd, 0)
            return data[:2] + reply
        step = question.turn
        question.turn = step + 1 if step + 1 < steps else 0
        reply = spelling.rings[rd][step]  # inline: the call below is for the first time
        if reply is None:
            reply = spelling.reply(rd, step)
        return data[:2] + reply

    def fresh(self, data: bytes) -> bytes | None:
        """The reply just stored for this query, not counted as a hit (it was a miss)."""
        reply = self.hit(data)
        if reply is not None:
            self.hits[self._spellings[data[4:]].question.outcome] -= 1
        return reply

    def declined(self, key: bytes) -> bool:
        """The question goes the dnslib way every time (forwarded names)."""
        return self._questions.get(key) is _FALLBACK

    def decline(self, key: bytes) -> None:
        self._make_room(0)
        self._questions[key] = _FALLBACK

    def store(self, data: bytes, key: bytes, question_end: int, made: Made, make: Maker) -> None:
        """Keep a reply made for this query (spelled as ``data``) under its scope."""
        question = self._questions.get(key)
        if not isinstance(question, _Question):
            self._make_room(sum(len(made.reply) for _ in range(min(made.cycle, RING))))
            question = _Question(made, question_end, make, self.serial)
            self._questions[key] = question
            self._scopes.setdefault(made.scope, []).append(key)
        if len(self._spellings) >= MAX_SPELLINGS:
            self._spellings.clear()
        spelling = _Spelling(question, data[HEADER:question_end])
        self._make_room(2 * len(question.tails) * len(made.reply))
        self._spellings[data[4:]] = spelling
        question.spellings.append(data[4:])

    def drop(self, scopes: Iterable[str]) -> None:
        """Forget every question of these scopes."""
        for scope in scopes:
            for key in self._scopes.pop(scope, ()):
                question = self._questions.pop(key, None)
                if isinstance(question, _Question):
                    self._retire(question)
                    for spelled in question.spellings:
                        self._spellings.pop(spelled, None)

    def answers(self) -> dict[str, int]:
        """Replies made, by scope (a service's name, or a marker of encode.py)."""
        found = dict(self._retired)
        for question in self._questions.values():
            if isinstance(question, _Question):
                found[question.scope] = found.get(question.scope, 0) + question.answers
        return found

    def _retire(self, question: _Question | object) -> None:
        if isinstance(question, _Question) and question.answers:
            scope = question.scope
            self._retired[scope] = self._retired.get(scope, 0) + question.answers

    def _patch(self, spelling: _Spelling) -> None:
        question = spelling.question
        serial = self.serial.to_bytes(4, "big")
        if question.serial != self.serial:
            at = question.serial_at
            question.tails = [
                None if t is None else t[:at] + serial + t[at + 4 :] for t in question.tails
            ]
            question.serial = self.serial
        at = question.serial_at + len(spelling.spelled) + HEADER - 2
        for ring in spelling.rings:
            for i, reply in enumerate(ring):
                if reply is not None:
                    ring[i] = reply[:at] + serial + reply[at + 4 :]
        spelling.serial = self.serial

    def _make_room(self, size: int) -> None:
        """Start over when the cache would pass MAX_QUESTIONS or MAX_BYTES."""
        if len(self._questions) >= MAX_QUESTIONS or self._bytes + size > MAX_BYTES:
            self.clear()
        self._bytes += size
