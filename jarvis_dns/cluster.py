"""Who does what among the nodes of a cluster (pure).

* Active checks are split by rendezvous hashing (highest random weight): each instance
  is probed by the live node that scores highest for it. Every node computes the same
  answer from the same member list, and when a node leaves only its own share moves
  (to the node that scored second), so a dead node's checks are taken over within one
  node TTL and nobody else's checks move.
* Cleanup of the long dead, self-preservation and turning lease expiries into "ttl
  expired" events are decided once, by the elected leader.

A single node is its own cluster: it owns everything and leads (``Solo``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol

from jarvis_dns.models import Key

Listener = Callable[[], None]


def score(node: str, key: Key) -> bytes:
    data = f"{node}\x00{key[0]}\x00{key[1]}".encode()
    return hashlib.blake2b(data, digest_size=8).digest()


def owner(key: Key, nodes: Sequence[str]) -> str | None:
    """The node that runs this instance's active check; None when no node is live."""
    return max(nodes, key=lambda node: score(node, key)) if nodes else None


class Nodes(Protocol):
    """This node's idea of the cluster: members, leader, and a call when either moves."""

    @property
    def name(self) -> str: ...

    @property
    def members(self) -> Sequence[str]: ...

    @property
    def leading(self) -> bool: ...

    def owns(self, key: Key) -> bool: ...

    def on_change(self, fn: Listener) -> None: ...

    def status(self) -> dict[str, object]: ...


class LeaseExpiries(Protocol):
    """A shared store's TTL decisions (EtcdStore): instances whose lease etcd let lapse."""

    def expirations(self) -> AsyncIterator[Key]: ...

    def without_lease(self, keys: Iterable[Key]) -> list[Key]: ...


class Solo:
    """The cluster of one: a single node checks everything and decides everything."""

    def __init__(self, name: str = "solo") -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def members(self) -> Sequence[str]:
        return [self._name]

    @property
    def leading(self) -> bool:
        return True

    def owns(self, key: Key) -> bool:
        return True

    def on_change(self, fn: Listener) -> None:
        return None

    def status(self) -> dict[str, object]:
        return {"node": self._name, "members": [self._name], "leader": self._name}
