"""The pure parts of the health monitor: timer wheel, HTTP verdicts, check defaults."""

from __future__ import annotations

import json

import pytest

from jarvis_dns.config import Config
from jarvis_dns.health.outcome import interpret_http
from jarvis_dns.health.targets import MIN_INTERVAL_S, resolve_check
from jarvis_dns.health.wheel import TimerWheel
from jarvis_dns.models import MAX_CHECK_OUTPUT_BYTES, Check, cap_output

# -- TimerWheel ---------------------------------------------------------------


def test_wheel_pops_only_what_is_due() -> None:
    wheel: TimerWheel[str] = TimerWheel(1.0)
    wheel.schedule("a", 10.0)
    wheel.schedule("b", 10.5)
    wheel.schedule("c", 12.0)
    assert wheel.pop_due(9.99) == []
    assert wheel.pop_due(10.0) == ["a"]
    assert wheel.pop_due(10.9) == []  # b is due at 10.5 but its bucket closes at 11
    assert wheel.pop_due(11.0) == ["b"]
    assert len(wheel) == 1 and "c" in wheel


def test_wheel_move_and_cancel() -> None:
    wheel: TimerWheel[str] = TimerWheel(1.0)
    wheel.schedule("a", 10.0)
    wheel.schedule("a", 20.0)  # a heartbeat moves it
    wheel.schedule("b", 10.0)
    wheel.cancel("b")
    wheel.cancel("missing")
    assert wheel.pop_due(15.0) == []
    assert wheel.pop_due(20.0) == ["a"]
    assert len(wheel) == 0


def test_wheel_past_deadline_pops_on_the_next_tick() -> None:
    wheel: TimerWheel[str] = TimerWheel(0.25)
    assert wheel.pop_due(100.0) == []
    wheel.schedule("late", 50.0)
    assert wheel.pop_due(100.1) == []  # still inside the bucket already processed
    assert wheel.pop_due(100.25) == ["late"]


def test_wheel_big_clock_jump_scans_occupied_slots() -> None:
    wheel: TimerWheel[int] = TimerWheel(0.25)
    wheel.pop_due(0.0)
    for i in range(5):
        wheel.schedule(i, 10.0 * i + 1)
    assert wheel.pop_due(1e9) == [0, 1, 2, 3, 4]


# -- HTTP verdicts -------------------------------------------------------------


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("status", "raw", "passed", "busy"),
    [
        (200, b"", True, None),
        (204, b"", True, None),
        (200, b"plain text ok", True, None),
        (200, body({"status": "healthy"}), True, None),
        (200, body({"status": "OK"}), True, None),
        (200, body({"status": "pass"}), True, None),
        (200, body({"status": "degraded"}), False, None),
        (200, body({"busy": True}), True, True),
        (200, body({"busy": False}), True, False),
        (200, body({"busy": "yes"}), True, None),  # not a bool: ignored
        (200, body([1, 2]), True, None),
        (429, b"slow down", True, True),
        (500, b"boom", False, None),
        (503, body({"status": "ok"}), False, None),
        (302, b"", False, None),
        (404, b"", False, None),
    ],
)
def test_interpret_http(status: int, raw: bytes, passed: bool, busy: bool | None) -> None:
    result = interpret_http(status, raw)
    assert (result.passed, result.busy) == (passed, busy)
    assert result.output.startswith(f"HTTP {status}")


def test_interpret_http_keeps_metrics() -> None:
    result = interpret_http(200, body({"metrics": {"load": 0.5}, "status": "ok"}))
    assert result.metrics == {"load": 0.5}
    assert interpret_http(200, body({"metrics": 3})).metrics is None


def test_output_is_capped_at_4_kib_without_splitting_characters() -> None:
    text = "é" * 5000  # two bytes each
    capped = cap_output(text)
    assert len(capped.encode()) <= MAX_CHECK_OUTPUT_BYTES
    assert capped == "é" * (MAX_CHECK_OUTPUT_BYTES // 2)
    long_500 = interpret_http(500, b"x" * 100_000)
    assert len(long_500.output.encode()) <= MAX_CHECK_OUTPUT_BYTES
    assert cap_output("short") == "short"


# -- check defaults ------------------------------------------------------------


def test_server_defaults_fill_unset_interval_and_timeout() -> None:
    config = Config(check_interval_s=15.0, check_timeout_s=2.0)
    resolved = resolve_check(Check(), config)
    assert (resolved.interval_s, resolved.timeout_s) == (15.0, 2.0)
    explicit = resolve_check(Check(interval_s=7.0, timeout_s=3.0), config)
    assert (explicit.interval_s, explicit.timeout_s) == (7.0, 3.0)


def test_minimum_interval_and_timeout_cap() -> None:
    resolved = resolve_check(Check(interval_s=0.1, timeout_s=3.0), Config())
    assert resolved.interval_s == MIN_INTERVAL_S
    assert resolved.timeout_s == MIN_INTERVAL_S  # a probe never outlives its interval
