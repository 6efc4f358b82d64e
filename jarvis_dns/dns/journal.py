"""What each registry change did to the zone, kept for IXFR (RFC 1995) (pure).

``Tracker`` follows the change path (it is told of every applied batch, like the DNS
cache) and works out which records the batch removed from the registry zone and which
it added, from the instances as the zone last showed them: an instance's own records
come and go with it; a service's ``<svc>.Z`` addresses follow counters of its idle and
all addresses, so a change costs the same in a service of ten instances or of 100,000.

``Journal`` keeps those differences by change index, bounded like the event log
(``--event-log-size``): an IXFR from a serial it still reaches is answered with the
one condensed difference from there to now (RFC 1995 5); from an older serial, or one
it never saw (before a restart), the answer is the whole zone.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from jarvis_dns.dns.content import Address, Fallback, Record, ZoneContent
from jarvis_dns.dns.encode import packed_address
from jarvis_dns.dns.serial import serial_of
from jarvis_dns.models import Event, Instance, Key


@dataclass(slots=True)
class Delta:
    """Records removed and added, composed in order: a record added and then removed
    again is in neither set (the sets of a zone's records are what is compared)."""

    removed: set[Record] = field(default_factory=set)
    added: set[Record] = field(default_factory=set)

    def remove(self, records: Iterable[Record]) -> None:
        for record in records:
            if record in self.added:
                self.added.discard(record)
            else:
                self.removed.add(record)

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            if record in self.removed:
                self.removed.discard(record)
            else:
                self.added.add(record)

    def then(self, later: Delta) -> None:
        self.remove(later.removed)
        self.add(later.added)

    def __bool__(self) -> bool:
        return bool(self.removed or self.added)


class _Addresses:
    """A service's ``<svc>.Z`` addresses: the idle instances', all when none is idle
    (``discovery.idle_first``: an idle instance registered by host name, which has no
    address, still keeps the busy ones out)."""

    __slots__ = ("every", "idle", "idle_instances", "instances", "shown")

    def __init__(self) -> None:
        self.idle: Counter[Address] = Counter()
        self.every: Counter[Address] = Counter()
        self.instances = 0  # live ones
        self.idle_instances = 0
        self.shown: set[Address] = set()

    def change(
        self, address: Address | None, busy: bool, step: int
    ) -> tuple[set[Address], set[Address]]:
        """Count one live instance in (+1) or out (-1); the addresses that left and
        joined the answer."""
        idle_before = self.idle_instances > 0
        self.instances += step
        if not busy:
            self.idle_instances += step
        every = address is not None and _count(self.every, address, step)
        idle = address is not None and not busy and _count(self.idle, address, step)
        source = self.idle if self.idle_instances > 0 else self.every
        if (self.idle_instances > 0) != idle_before:  # switched between idle and all
            now = set(source)
            left, joined = self.shown - now, now - self.shown
            self.shown = now
            return left, joined
        if address is None or not (idle if self.idle_instances > 0 else every):
            return set(), set()
        if address in source:
            self.shown.add(address)
            return set(), {address}
        self.shown.discard(address)
        return {address}, set()


def _count(counter: Counter[Address], address: Address, step: int) -> bool:
    """Move a count; whether the address came or went (crossed zero)."""
    counter[address] += step
    if counter[address] <= 0:
        del counter[address]
        return True
    return counter[address] == 1 and step > 0


class Tracker:
    """The registry zone's changes, batch by batch (see the module docstring)."""

    def __init__(self, content: ZoneContent) -> None:
        self.content = content
        self._seen: dict[Key, Instance] = {}
        self._addresses: dict[str, _Addresses] = {}
        self._live: set[str] = set()
        self._fallback_list: list[Fallback] = []
        self._shown: dict[tuple[bytes, ...], bool] = {}
        self.reset()

    def reset(self) -> None:
        """Start again from the view as it is (start-up, a zone file reload)."""
        view = self.content.discovery.view
        self._seen.clear()
        self._addresses.clear()
        for svc in view.service_types():
            for inst in view.instances(svc):
                self._seen[(svc, inst.key)] = inst
                self._count(inst, 1)
        self._live = set(self.content.discovery.live_services())
        self._fallback_list = self.content.fallbacks()  # they change with the zone file only
        self._shown = {f.owner: self.content.shown(f) for f in self._fallback_list}

    def changed(self, events: Sequence[Event]) -> Delta:
        """What the batch that told these events did to the zone."""
        delta = Delta()
        touched: set[str] = set()
        view = self.content.discovery.view
        for svc, iid in dict.fromkeys((e.service_type, str(e.instance_id)) for e in events):
            old = self._seen.pop((svc, iid), None)
            new = view.find(svc, iid)
            if new is not None:
                self._seen[(svc, new.key)] = new
            if new is old:
                continue
            touched.add(svc)
            if old is not None:
                delta.remove(self.content.instance(old))
                self._addressed(delta, old, -1)
            if new is not None:
                delta.add(self.content.instance(new))
                self._addressed(delta, new, 1)
        self._services(delta, touched)
        self._fallbacks(delta, touched)
        return delta

    def _count(self, inst: Instance, step: int) -> tuple[set[Address], set[Address]]:
        if not inst.live:
            return set(), set()
        addresses = self._addresses.get(inst.service_type)
        if addresses is None:
            addresses = self._addresses[inst.service_type] = _Addresses()
        left, joined = addresses.change(packed_address(inst.host), inst.busy, step)
        if not addresses.instances:
            del self._addresses[inst.service_type]
        return left, joined

    def _addressed(self, delta: Delta, inst: Instance, step: int) -> None:
        left, joined = self._count(inst, step)
        record = self.content.address_record
        delta.remove(record(inst.service_type, a) for a in left)
        delta.add(record(inst.service_type, a) for a in joined)

    def _services(self, delta: Delta, touched: set[str]) -> None:
        discovery = self.content.discovery
        for svc in touched:
            live = discovery.has_live(svc)
            if live == (svc in self._live):
                continue
            (self._live.add if live else self._live.discard)(svc)
            record = [self.content.services_record(svc)]
            delta.add(record) if live else delta.remove(record)

    def _fallbacks(self, delta: Delta, touched: set[str]) -> None:
        for fallback in self._fallback_list:
            if fallback.service and fallback.service not in touched:
                continue  # only its own service can hide or show it
            shown = self.content.shown(fallback)
            if shown != self._shown.get(fallback.owner):
                self._shown[fallback.owner] = shown
                delta.add(fallback.records) if shown else delta.remove(fallback.records)


class Journal:
    """The differences by change index, from ``base`` on; at most ``size`` of them."""

    def __init__(self, size: int, base: int = 0) -> None:
        self.size = max(1, size)
        self.base = base
        self._entries: deque[tuple[int, Delta]] = deque()

    def restart(self, index: int) -> None:
        """Forget everything: differences from before ``index`` are unknown."""
        self._entries.clear()
        self.base = index

    def record(self, index: int, delta: Delta) -> None:
        if len(self._entries) >= self.size:
            dropped, _ = self._entries.popleft()
            self.base = dropped
        self._entries.append((index, delta))

    @property
    def index(self) -> int:
        return self._entries[-1][0] if self._entries else self.base

    def since(self, serial: int) -> Delta | None:
        """The condensed difference from the version with this SOA serial to now; None
        when the journal does not reach back to it."""
        versions = [self.base, *(index for index, _ in self._entries)]
        for at in range(len(versions) - 1, -1, -1):
            if serial_of(versions[at]) == serial:
                total = Delta()
                for _, delta in list(self._entries)[at:]:
                    total.then(delta)
                return total
        return None

    def __len__(self) -> int:
        return len(self._entries)
