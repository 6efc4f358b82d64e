"""Server-wide defaults applied to per-instance settings (pure)."""

from __future__ import annotations

import dataclasses

from jarvis_dns.config import Config
from jarvis_dns.models import Check, Instance

MIN_INTERVAL_S = 1.0  # faster probing would be a self-inflicted DoS on the fleet


def resolve_check(check: Check, config: Config) -> Check:
    """Fill what the registration left out (None) with --check-interval/--check-timeout."""
    interval = config.check_interval_s if check.interval_s is None else check.interval_s
    interval = max(interval, MIN_INTERVAL_S)
    timeout = config.check_timeout_s if check.timeout_s is None else check.timeout_s
    # A probe may not outlive its interval, or the schedule slips behind (Consul caps too).
    return dataclasses.replace(check, interval_s=interval, timeout_s=min(timeout, interval))


def deregister_after(inst: Instance, config: Config) -> float:
    if inst.deregister_after_s is not None:
        return inst.deregister_after_s
    return config.deregister_after_s
