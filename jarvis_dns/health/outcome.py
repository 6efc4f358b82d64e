"""What one probe observed, and what a run of them means for an instance (pure).

HTTP rules (issue 4): 2xx passes; 429 means busy, not dead; anything else fails. A JSON
body may carry `busy`, `status` (anything but healthy/ok/pass fails) and `metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jarvis_dns import validate
from jarvis_dns.errors import ValidationError
from jarvis_dns.models import (
    Check,
    EventKind,
    Instance,
    JSONObject,
    Status,
    cap_output,
)

HEALTHY_WORDS = frozenset({"healthy", "ok", "pass"})
HTTP_TOO_MANY_REQUESTS = 429


@dataclass(frozen=True, slots=True)
class CheckResult:
    passed: bool
    output: str
    busy: bool | None = None  # None: the probe said nothing about load
    metrics: JSONObject | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """What one probe result asks of the instance (an Observe command)."""

    kind: EventKind
    status: Status | None
    reason: str
    busy: bool | None


def failure(output: str) -> CheckResult:
    return CheckResult(passed=False, output=cap_output(output))


def interpret_http(status: int, body: bytes) -> CheckResult:
    text = body.decode("utf-8", "replace").strip()
    output = cap_output(f"HTTP {status}: {text}" if text else f"HTTP {status}")
    if status == HTTP_TOO_MANY_REQUESTS:
        return CheckResult(passed=True, output=output, busy=True)
    if not 200 <= status < 300:
        return CheckResult(passed=False, output=output)
    doc = _json_object(body)
    metrics = _valid_metrics(doc.get("metrics"))
    said = doc.get("status")
    if said is not None and str(said).strip().lower() not in HEALTHY_WORDS:
        return CheckResult(passed=False, output=output, metrics=metrics)
    busy = doc.get("busy")
    return CheckResult(
        passed=True, output=output, busy=busy if isinstance(busy, bool) else None, metrics=metrics
    )


def _valid_metrics(value: object) -> JSONObject | None:
    """Metrics as a heartbeat may send them (size, depth, no NaN), else none at all."""
    if not isinstance(value, dict):
        return None
    try:
        return validate.json_object(value, "metrics", validate.MAX_METRICS_BYTES)
    except ValidationError:
        return None


def _json_object(body: bytes) -> JSONObject:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}  # a 2xx with a plain-text (or absurdly nested) body still passes
    return doc if isinstance(doc, dict) else {}


@dataclass(slots=True)
class Streak:
    """Consecutive results of one instance's check: the thresholds count these.

    A pass resets the failure count and a failure the pass count, so a flapping
    instance (pass, fail, pass, ...) never reaches either threshold.
    """

    failures: int = 0
    successes: int = 0
    busy_by_check: bool = False  # the last busy=True came from a probe, not a heartbeat
    failing: bool = False  # failures reached failures_before_dead and no pass since

    def judge(self, inst: Instance, check: Check, result: CheckResult, now: float) -> Mark:
        if result.passed:
            return self._passed(inst, check, result, now)
        return self._failed(inst, check, result)

    def _passed(self, inst: Instance, check: Check, result: CheckResult, now: float) -> Mark:
        self.failures, self.successes, self.failing = 0, self.successes + 1, False
        status: Status | None = None
        # A pass only revives an instance whose heartbeat TTL still holds: one that died
        # of silence stays dead until it heartbeats, as with Consul's separate TTL check.
        fresh = inst.last_heartbeat + inst.ttl_s > now
        if inst.status is Status.DEAD and fresh and self.successes >= check.successes_before_active:
            status = Status.ACTIVE
        return Mark(EventKind.CHECK_PASSED, status, result.output, self._busy(result))

    def _failed(self, inst: Instance, check: Check, result: CheckResult) -> Mark:
        self.successes, self.failures = 0, self.failures + 1
        self.failing = self.failures >= check.failures_before_dead
        status: Status | None = None
        if inst.status is Status.ACTIVE and self.failing:
            status = Status.DEAD
        return Mark(EventKind.CHECK_FAILED, status, result.output, None)

    def _busy(self, result: CheckResult) -> bool | None:
        if result.busy is not None:
            self.busy_by_check = result.busy
            return result.busy
        if self.busy_by_check:  # the 429 is over: a plain 2xx means idle again
            self.busy_by_check = False
            return False
        return None  # leave busy to the heartbeats
