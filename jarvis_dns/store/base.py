"""The one storage Protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jarvis_dns.models import Batch, Instance, Snapshot


class Store(Protocol):
    def load(self) -> Snapshot:
        """Everything kept: instances, the event log tail and the change index."""
        ...

    def write(self, batch: Batch) -> None:
        """Apply one batch atomically and durably, or raise StoreError."""
        ...

    def write_liveness(self, instances: Sequence[Instance]) -> None:
        """Persist heartbeat timestamps and metrics; may be lazy (no fsync each)."""
        ...

    def close(self) -> None: ...
