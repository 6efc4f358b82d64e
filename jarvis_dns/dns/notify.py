"""NOTIFY (RFC 1996): when to tell each secondary that a zone changed (pure).

Coalesced: at most one NOTIFY a second per secondary and zone, however many changes
came meanwhile; each one carries the newest serial, so a burst of 1,000 registrations
costs a secondary one or two transfers, not 1,000. Retried until acknowledged: an
unanswered NOTIFY goes again after 2 s, 4 s, 8 s ... at most a minute apart, for as long
as the secondary stays silent (RFC 1996 3.6 leaves the count to the primary; a
secondary that was down catches up as soon as it is back).

The schedule only decides; notifier.py sends and hears the answers. Time comes from
an injected clock, so the tests move it by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Clock = Callable[[], float]
Target = tuple[str, int]  # a secondary's address and port
Slot = tuple[Target, str]  # one secondary, one zone

MIN_INTERVAL_S = 1.0  # at most one NOTIFY a second per secondary and zone
FIRST_RETRY_S = 2.0  # RFC 1996 3.6's "interval": after this long without an answer
MAX_RETRY_S = 60.0  # doubling up to here, then steady


def retry_delay(attempts: int) -> float:
    """Seconds to wait for an answer after the ``attempts``-th sending."""
    doublings = min(max(0, attempts - 1), 16)  # a secondary down for days: no overflow
    return min(FIRST_RETRY_S * 2.0**doublings, MAX_RETRY_S)


@dataclass(slots=True)
class _State:
    pending: bool = False  # a change this secondary has not been sent word of
    sent_at: float | None = None
    waiting: int | None = None  # the message ID of the NOTIFY not answered yet
    attempts: int = 0


class NotifySchedule:
    def __init__(self, targets: Sequence[Target], clock: Clock) -> None:
        self.targets = list(targets)
        self._clock = clock
        self._slots: dict[Slot, _State] = {}

    def changed(self, zone: str) -> None:
        """The zone changed: every secondary is to hear of it."""
        for target in self.targets:
            self._slots.setdefault((target, zone), _State()).pending = True

    def due(self) -> list[Slot]:
        """The NOTIFYs to send now."""
        now = self._clock()
        return [slot for slot, state in self._slots.items() if _due_at(state) <= now]

    def sent(self, slot: Slot, message_id: int) -> None:
        state = self._slots[slot]
        state.attempts = 1 if state.pending else state.attempts + 1
        state.pending, state.waiting, state.sent_at = False, message_id, self._clock()

    def answered(self, slot: Slot, message_id: int) -> bool:
        """An answer came; whether it acknowledged the latest NOTIFY (an answer to one
        a newer one replaced acknowledges nothing: the newer serial is still unheard)."""
        state = self._slots.get(slot)
        if state is None or state.waiting != message_id:
            return False
        state.waiting, state.attempts = None, 0
        return True

    def waiting_for(self, target: Target, message_id: int) -> Slot | None:
        """The slot whose unanswered NOTIFY has this ID."""
        for slot, state in self._slots.items():
            if slot[0] == target and state.waiting == message_id:
                return slot
        return None

    def next_due(self) -> float | None:
        """When the next NOTIFY falls due (None: nothing waits)."""
        times = [_due_at(s) for s in self._slots.values()]
        return min((t for t in times if t != _NEVER), default=None)

    def waiting(self, slot: Slot) -> bool:
        state = self._slots.get(slot)
        return state is not None and (state.pending or state.waiting is not None)


_NEVER = float("inf")


def _due_at(state: _State) -> float:
    if state.sent_at is None:
        return -_NEVER if state.pending else _NEVER
    if state.pending:
        return state.sent_at + MIN_INTERVAL_S
    if state.waiting is not None:
        return state.sent_at + retry_delay(state.attempts)
    return _NEVER
