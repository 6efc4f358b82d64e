"""Server-wide defaults applied to per-instance settings (pure)."""

from __future__ import annotations

import dataclasses

from jarvis_dns.config import Config
from jarvis_dns.models import Check, Instance

MIN_INTERVAL_S = 1.0  # faster probing would be a self-inflicted DoS on the fleet
# The validator fills omitted check fields with the model's defaults, so a value equal
# to the default is read as "not given" and the server's --check-interval and
# --check-timeout apply instead.
_MODEL = Check()


def resolve_check(check: Check, config: Config) -> Check:
    interval = check.interval_s
    if interval == _MODEL.interval_s:
        interval = config.check_interval_s
    interval = max(interval, MIN_INTERVAL_S)
    timeout = check.timeout_s
    if timeout == _MODEL.timeout_s:
        timeout = config.check_timeout_s
    # A probe may not outlive its interval, or the schedule slips behind (Consul caps too).
    return dataclasses.replace(check, interval_s=interval, timeout_s=min(timeout, interval))


def deregister_after(inst: Instance, config: Config) -> float:
    if inst.deregister_after_s is not None:
        return inst.deregister_after_s
    return config.deregister_after_s
