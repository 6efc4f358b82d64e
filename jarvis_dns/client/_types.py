"""Type aliases shared by the client modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# A metrics provider may be a plain function or a coroutine function.
MetricsProvider = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
