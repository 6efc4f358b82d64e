"""Counter, Histogram and Reading, and the ``Metrics`` that holds them (pure).

Plain ints and floats in dicts and lists: the asyncio loop is the only writer and the
only reader, so nothing takes a lock. prometheus-client sees them only when scraped.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jarvis_dns.metrics.catalogue import Kind, Spec, spec

Labels = tuple[str, ...]
Sample = tuple[Labels, float]


class Counter:
    """A number per label values that only grows."""

    __slots__ = ("spec", "values")

    def __init__(self, spec_: Spec) -> None:
        self.spec = spec_
        # Without labels there is one series, shown (as 0) before anything is counted.
        self.values: dict[Labels, float] = {} if spec_.labels else {(): 0}

    def inc(self, *labels: str, by: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by

    def start(self, *label_values: str) -> None:
        """Show these series (one label) at 0 until counted: a rate needs a start."""
        for value in label_values:
            self.values.setdefault((value,), 0)

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0)

    def samples(self) -> list[Sample]:
        return list(self.values.items())


@dataclass(slots=True)
class Buckets:
    """One label set's observations: counts per bucket (not cumulative), sum, count."""

    counts: list[int]
    total: float = 0.0
    count: int = 0
    recent: deque[float] | None = None

    def cumulative(self, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
        rows, running = [], 0
        for bound, n in zip((*bounds, math.inf), self.counts, strict=True):
            running += n
            rows.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return rows


@dataclass(slots=True)
class Histogram:
    """Observations in the catalogue's buckets; with ``recent``, the latest that many
    are kept too, for exact quantiles (the JSON of /v1/health shows p50/p99/max)."""

    spec: Spec
    recent: int = 0
    cells: dict[Labels, Buckets] = field(default_factory=dict)

    def cell(self, *labels: str) -> Buckets:
        """The buckets of one label set, to observe into without a lookup each time."""
        found = self.cells.get(labels)
        if found is None:
            kept: deque[float] | None = deque(maxlen=self.recent) if self.recent else None
            found = self.cells[labels] = Buckets([0] * (len(self.spec.buckets) + 1), recent=kept)
        return found

    def observe(self, value: float, *labels: str) -> None:
        observe(self.spec.buckets, self.cell(*labels), value)

    def quantile(self, q: float, *labels: str) -> float | None:
        """Over the recent observations of one label set; None before the first."""
        found = self.cells.get(labels)
        if found is None or not found.recent:
            return None
        ordered = sorted(found.recent)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def observe(bounds: tuple[float, ...], cell: Buckets, value: float) -> None:
    cell.counts[bisect.bisect_left(bounds, value)] += 1
    cell.total += value
    cell.count += 1
    if cell.recent is not None:
        cell.recent.append(value)


@dataclass(slots=True)
class Reading:
    """A counter or gauge whose samples are read when someone asks (a scrape): for
    figures a part already holds (the view's counts, a queue's length, the DNS ints)."""

    spec: Spec
    read: Callable[[], Iterable[Sample]]

    def samples(self) -> list[Sample]:
        return list(self.read())


Family = Counter | Histogram | Reading


class Metrics:
    """The metrics of one server: each made once, by name from the catalogue."""

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}

    def counter(self, name: str) -> Counter:
        found = self._families.get(name)
        if found is None:
            found = self._families[name] = Counter(_spec(name, Kind.COUNTER))
        assert isinstance(found, Counter)
        return found

    def histogram(self, name: str, recent: int = 0) -> Histogram:
        found = self._families.get(name)
        if found is None:
            found = self._families[name] = Histogram(_spec(name, Kind.HISTOGRAM), recent)
        assert isinstance(found, Histogram)
        return found

    def reading(self, name: str, read: Callable[[], Iterable[Sample]]) -> Reading:
        """Register (or replace) what a counter or gauge reads at scrape time."""
        found = Reading(spec(name), read)
        self._families[name] = found
        return found

    def gauge(self, name: str, read: Callable[[], float]) -> Reading:
        """A gauge without labels, read at scrape time."""
        if spec(name).kind is not Kind.GAUGE:
            raise ValueError(f"{name} is not a gauge")
        return self.reading(name, lambda: [((), float(read()))])

    def families(self) -> list[Family]:
        return list(self._families.values())

    def __contains__(self, name: str) -> bool:
        return name in self._families


def _spec(name: str, kind: Kind) -> Spec:
    found = spec(name)
    if found.kind is not kind:
        raise ValueError(f"{name} is a {found.kind.value}, not a {kind.value}")
    return found
