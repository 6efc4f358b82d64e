"""The health monitor: TTL expiry, active HTTP/TCP checks, cleanup, self-preservation.

monitor.py       HealthMonitor: follows the Registry, ticks, owns the checks
wheel.py         TimerWheel: deadlines in buckets, O(1) moves (pure)
preservation.py  SelfPreservation: hold mass TTL expiry (pure)
outcome.py       CheckResult, HTTP interpretation, thresholds (pure)
targets.py       server-wide check defaults (pure)
checks.py        HttpCheck, TcpCheck: periodic probes reporting to a Notifier
limiter.py       the global bound on probes in flight; probe counts and lag into metrics
"""

from jarvis_dns.health.checks import HttpCheck, Notifier, Target, TcpCheck
from jarvis_dns.health.monitor import HealthMonitor
from jarvis_dns.health.outcome import CheckResult

__all__ = ["CheckResult", "HealthMonitor", "HttpCheck", "Notifier", "Target", "TcpCheck"]
