"""Requirements and strategies: pure, table-driven."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from jarvis_dns.errors import ValidationError
from jarvis_dns.matching import Selector, check_strategy, compile_requirements, load_of

INSTANCE: dict[str, Any] = {
    "service_type": "auth",
    "instance_id": 1,
    "busy": False,
    "status": "active",
    "weight": 100,
    "metadata": {
        "version": "1.0",
        "capabilities": ["oauth", "jwt"],
        "max_connections": 1000,
        "region": {"name": "eu", "zone": 2},
        "gpu": False,
    },
}

CASES: list[tuple[dict[str, Any], bool]] = [
    ({}, True),
    ({"version": "1.0"}, True),
    ({"version": "2.0"}, False),
    ({"version": 1.0}, False),
    ({"capabilities": ["oauth"]}, True),
    ({"capabilities": ["oauth", "jwt"]}, True),
    ({"capabilities": ["oauth", "saml"]}, False),
    ({"capabilities": "jwt"}, True),
    ({"version": ["1.0"]}, False),
    ({"busy": False}, True),
    ({"busy": True}, False),
    ({"status": "active"}, True),
    ({"status": "dead"}, False),
    ({"missing": "x"}, False),
    ({"max_connections": {"$gt": 500}}, True),
    ({"max_connections": {"$gt": 1000}}, False),
    ({"max_connections": {"$gte": 1000}}, True),
    ({"max_connections": {"$lt": 1000}}, False),
    ({"max_connections": {"$lte": 1000, "$gt": 10}}, True),
    ({"max_connections": {"$gt": "a"}}, False),
    ({"version": {"$eq": "1.0"}}, True),
    ({"version": {"$ne": "1.0"}}, False),
    ({"missing": {"$ne": "x"}}, True),
    ({"version": {"$in": ["1.0", "1.1"]}}, True),
    ({"version": {"$in": ["2.0"]}}, False),
    ({"version": {"$nin": ["2.0"]}}, True),
    ({"capabilities": {"$contains": "oauth"}}, True),
    ({"capabilities": {"$contains": "saml"}}, False),
    ({"version": {"$contains": "."}}, True),
    ({"missing": {"$exists": False}}, True),
    ({"version": {"$exists": False}}, False),
    ({"version": {"$exists": True}}, True),
    ({"region.name": "eu"}, True),
    ({"region.zone": {"$gte": 2}}, True),
    ({"region.nope": "eu"}, False),
    ({"region": {"name": "eu", "zone": 2}}, True),
    ({"gpu": False}, True),
    ({"gpu": 0}, False),
    ({"max_connections": {"$gt": False}}, False),
    ({"version": "1.0", "busy": True}, False),
]


@pytest.mark.parametrize(("requirements", "expected"), CASES)
def test_requirement(requirements: dict[str, Any], expected: bool) -> None:
    assert compile_requirements(requirements)(INSTANCE) is expected


@pytest.mark.parametrize(
    ("requirements", "field"),
    [
        ({"v": {"$regex": "x"}}, "requirements.v"),
        ({"v": {"$in": "x"}}, "requirements.v"),
        ({"v": {"$exists": "yes"}}, "requirements.v"),
        ([1, 2], "requirements"),
    ],
)
def test_malformed_requirements_name_the_field(requirements: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        compile_requirements(requirements)
    assert err.value.field == field


def _fleet(n: int) -> list[dict[str, Any]]:
    return [
        {**INSTANCE, "instance_id": i, "weight": 1 + 99 * (i == 0), "metrics": {"load": 50 - i}}
        for i in range(n)
    ]


def test_round_robin_visits_each_in_turn() -> None:
    fleet = _fleet(3)
    selector = Selector()
    picks = [selector.select("round_robin", fleet)["instance_id"] for _ in range(6)]  # type: ignore[index]
    assert picks == [0, 1, 2, 0, 1, 2]


def test_weighted_follows_weights() -> None:
    selector = Selector(random.Random(7))
    counts = Counter(selector.select("weighted", _fleet(2))["instance_id"] for _ in range(2000))  # type: ignore[index]
    assert counts[0] > 15 * counts[1]  # weights 100 : 1


def test_random_reaches_all() -> None:
    selector = Selector(random.Random(3))
    picks = {selector.select("random", _fleet(4))["instance_id"] for _ in range(200)}  # type: ignore[index]
    assert picks == {0, 1, 2, 3}


def test_least_loaded_prefers_idle_then_low_load() -> None:
    fleet = _fleet(3)
    assert load_of(fleet[2]) == 48
    assert Selector().select("least_loaded", fleet)["instance_id"] == 2  # type: ignore[index]
    fleet[2]["busy"] = True
    assert Selector().select("least_loaded", fleet)["instance_id"] == 1  # type: ignore[index]


def test_consistent_hash_is_stable_and_moves_little() -> None:
    selector = Selector()
    fleet = _fleet(5)
    keys = [f"user-{i}" for i in range(200)]
    before = {k: selector.select("consistent_hash", fleet, k)["instance_id"] for k in keys}  # type: ignore[index]
    again = {k: selector.select("consistent_hash", fleet, k)["instance_id"] for k in keys}  # type: ignore[index]
    assert before == again
    after = {k: selector.select("consistent_hash", fleet[:4], k)["instance_id"] for k in keys}  # type: ignore[index]
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == 4 for k in moved)  # only the removed instance's keys move


def test_empty_candidates_select_none() -> None:
    assert Selector().select("round_robin", []) is None


def test_strategy_checks() -> None:
    assert check_strategy(None, None) == "round_robin"
    with pytest.raises(ValidationError) as err:
        check_strategy("fastest", None)
    assert err.value.field == "strategy"
    with pytest.raises(ValidationError) as err:
        check_strategy("consistent_hash", None)
    assert err.value.field == "key"
