"""The event log: every transition with its reason, bounded (pure)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from jarvis_dns.models import Event

DEFAULT_EVENT_LOG_SIZE = 10_000
Subscriber = Callable[[Sequence[Event]], None]


class EventSource(Protocol):
    """Who tells of applied changes (changes.Changes): fn(events) after each batch."""

    def subscribe(self, fn: Subscriber) -> Callable[[], None]: ...


class EventLog:
    def __init__(self, size: int = DEFAULT_EVENT_LOG_SIZE) -> None:
        self._events: deque[Event] = deque(maxlen=size)

    def extend(self, events: Iterable[Event]) -> None:
        self._events.extend(events)

    def since(self, index: int, limit: int | None = None) -> list[Event]:
        found: list[Event] = []
        # Newest last: walk back only as far as the asked index.
        for event in reversed(self._events):
            if event.index <= index:
                break
            found.append(event)
        found.reverse()
        return found[:limit] if limit is not None else found

    def oldest_index(self, default: int) -> int:
        return self._events[0].index if self._events else default

    def __len__(self) -> int:
        return len(self._events)
