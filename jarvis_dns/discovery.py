"""Which instances answer a question: the ONE place DNS and HTTP both ask (pure).

Both faces read the view through a ``Discovery``, so they cannot disagree:

* live means ``status == active``; dead and maintenance instances are never answered;
* one order everywhere: numeric ids in numeric order, then labels (stable across nodes
  and restarts, unlike arrival order);
* idle first: where one address set is answered (DNS A/AAAA), busy instances are handed
  out only when nothing idle is left;
* the tag rule: ``metadata.tags`` and ``metadata.capabilities`` (lists of strings, or
  objects whose true values name tags), compared case-insensitively
  (``matching.tag_set``), for DNS ``_<tag>._sub`` names and for HTTP requirements alike.

Answers for a service are kept until its change index moves: every change that could
alter one (membership, status, busy, metadata) moves that index, and reads outnumber
changes by far.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from jarvis_dns.matching import Predicate, Selector, tag_set
from jarvis_dns.models import Instance, InstanceId

# Distinct (service, requirements) pairs kept; past it the cache starts over.
MATCH_CACHE_SIZE = 4096


class View(Protocol):
    """The reads discovery needs; jarvis_dns.registry.View provides them."""

    @property
    def index(self) -> int: ...

    def instances(self, service_type: str) -> list[Instance]: ...

    def service_types(self) -> list[str]: ...

    def service_index(self, service_type: str) -> int: ...

    def live_count(self, service_type: str) -> int: ...

    def find(self, service_type: str, instance_id: InstanceId) -> Instance | None: ...


def order_key(inst: Instance) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then labels."""
    iid = inst.instance_id
    return (0, iid, "") if isinstance(iid, int) else (1, 0, str(iid))


def ordered(instances: Iterable[Instance]) -> list[Instance]:
    return sorted(instances, key=order_key)


def idle_first(live: list[Instance]) -> list[Instance]:
    """The idle ones; all of them when every one is busy."""
    return [i for i in live if not i.busy] or live


def tags_of(inst: Instance) -> frozenset[str]:
    return tag_set(inst.metadata)


class Discovery:
    """Discovery over one view: the live set, matches, one pick."""

    def __init__(self, view: View, selector: Selector | None = None) -> None:
        self.view = view
        self.selector = selector or Selector()
        self._live: dict[str, tuple[int, list[Instance]]] = {}
        self._matches: dict[tuple[str, str], tuple[int, list[Instance]]] = {}

    @property
    def index(self) -> int:
        return self.view.index

    def service_types(self) -> list[str]:
        return self.view.service_types()

    def live(self, service_type: str) -> list[Instance]:
        """Live instances of one type, in the one order (cached per service index)."""
        index = self.view.service_index(service_type)
        hit = self._live.get(service_type)
        if hit is not None and hit[0] == index:
            return hit[1]
        found = ordered(i for i in self.view.instances(service_type) if i.live)
        if len(self._live) >= MATCH_CACHE_SIZE:
            self._live.clear()
        self._live[service_type] = (index, found)
        return found

    def live_instance(self, service_type: str, instance_id: InstanceId) -> Instance | None:
        inst = self.view.find(service_type, instance_id)
        return inst if inst is not None and inst.live else None

    def has_live(self, service_type: str) -> bool:
        """Whether the service answers at all: O(1), with no list built."""
        return self.view.live_count(service_type) > 0

    def live_services(self) -> list[str]:
        return [svc for svc in self.view.service_types() if self.has_live(svc)]

    def tagged(self, service_type: str, tag: str) -> list[Instance]:
        """Live instances carrying a tag (DNS ``_<tag>._sub._<svc>._tcp``)."""
        wanted = tag.lower()
        return [i for i in self.live(service_type) if wanted in tags_of(i)]

    def listing(self, service_type: str, predicate: Predicate) -> list[Instance]:
        """Every instance of one type (any status) the predicate admits, in the one order."""
        return ordered(i for i in self.view.instances(service_type) if predicate(i))

    def matching(
        self, service_type: str, predicate: Predicate, cache_key: str | None = None
    ) -> list[Instance]:
        """Live instances of one type that satisfy the predicate.

        With a cache_key (the requirements' canonical text) the answer is kept until the
        service's change index moves."""
        index = self.view.service_index(service_type)
        if cache_key is not None:
            hit = self._matches.get((service_type, cache_key))
            if hit is not None and hit[0] == index:
                return hit[1]
        found = [i for i in self.live(service_type) if predicate(i)]
        if cache_key is not None:
            if len(self._matches) >= MATCH_CACHE_SIZE:
                self._matches.clear()
            self._matches[(service_type, cache_key)] = (index, found)
        return found

    def discover(
        self,
        service_type: str,
        predicate: Predicate,
        strategy: str,
        key: str | None = None,
        cache_key: str | None = None,
    ) -> Instance | None:
        candidates = self.matching(service_type, predicate, cache_key)
        return self.selector.select(strategy, candidates, key)
