"""What heartbeats report: the default metrics provider and a safe caller."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Mapping
from typing import Any

from jarvis_dns.client._types import MetricsProvider
from jarvis_dns.models import JSONObject

log = logging.getLogger("jarvis_dns.client")

# The server keeps at most 4 KiB of metrics per instance; larger ones are dropped here
# rather than making the whole heartbeat fail with a 400.
MAX_METRICS_BYTES = 4096


def _load_psutil() -> Any:
    try:
        return importlib.import_module("psutil")
    except ImportError:  # psutil is the optional "metrics" extra
        return None


_psutil = _load_psutil()


def default_metrics() -> JSONObject:
    """CPU and memory use in percent when psutil is installed, else nothing."""
    if _psutil is None:
        return {}
    return {
        # interval=None: the share since the previous call, without blocking the loop.
        "cpu_usage": _psutil.cpu_percent(interval=None),
        "memory_usage": _psutil.virtual_memory().percent,
    }


async def collect(provider: MetricsProvider) -> JSONObject:
    """Call the provider; a failing or oversized result is logged and sent as {}."""
    try:
        result = provider()
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Mapping):
            raise TypeError(f"metrics provider returned {type(result).__name__}, not a mapping")
        metrics = dict(result)
        size = len(json.dumps(metrics))
    except Exception as exc:  # a user callback must not stop heartbeats
        log.warning("metrics provider failed: %s", exc)
        return {}
    if size > MAX_METRICS_BYTES:
        log.warning("metrics of %d bytes exceed %d; sending none", size, MAX_METRICS_BYTES)
        return {}
    return metrics
