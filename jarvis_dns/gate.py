"""Open connections, counted in all and per client address: the HTTP listener's and
DNS over TCP's (and TLS's) caps (pure)."""

from __future__ import annotations


class Gate:
    """Open connections, in all and per client address."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self.open = 0
        self.refused = 0
        self._by_client: dict[str, int] = {}

    def admit(self, client: str) -> bool:
        held = self._by_client.get(client, 0)
        if self.open >= self.total or held >= self.per_client:
            self.refused += 1
            return False
        self._by_client[client] = held + 1
        self.open += 1
        return True

    def release(self, client: str) -> None:
        self.open -= 1
        left = self._by_client.pop(client) - 1
        if left:
            self._by_client[client] = left
