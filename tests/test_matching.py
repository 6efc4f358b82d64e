"""Requirements and strategies: pure, table-driven."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from ledger import Ledger

from jarvis_dns.errors import ValidationError
from jarvis_dns.matching import Selector, check_strategy, compile_requirements, load_of, tag_set
from jarvis_dns.models import InstanceSpec

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


# The tag rule: requirements on tags/capabilities whose items are all strings compare
# case-insensitively against lists of strings or objects whose true values name tags,
# exactly what DNS answers for _<tag>._sub. Anything else takes the generic rule.
TAGGED: dict[str, Any] = {
    "service_type": "auth",
    "instance_id": 1,
    "busy": False,
    "status": "active",
    "metadata": {
        "tags": ["OAuth", "JWT", 3],
        "capabilities": {"GPU": True, "saml": False, "ldap": None},
    },
}

TAG_CASES: list[tuple[dict[str, Any], bool]] = [
    ({"tags": "oauth"}, True),
    ({"tags": "OAUTH"}, True),
    ({"tags": "OAuth"}, True),
    ({"tags": ["oauth", "jwt"]}, True),
    ({"tags": ["Oauth", "JwT"]}, True),
    ({"tags": ["oauth", "saml"]}, False),
    ({"tags": "kerberos"}, False),
    ({"tags": "3"}, False),  # a non-string item on the instance names no tag
    ({"capabilities": "gpu"}, True),  # an object: its true values name tags
    ({"capabilities": "GPU"}, True),
    ({"capabilities": ["gpu", "oauth"]}, True),  # one tag set, as DNS reads it
    ({"capabilities": "saml"}, False),  # false names no tag
    ({"capabilities": "ldap"}, False),  # nor does null
    ({"capabilities": ["gpu", "saml"]}, False),
    # Non-string items: the generic rule (exact, case-sensitive list membership).
    ({"tags": 3}, True),
    ({"tags": [3]}, True),
    ({"tags": ["OAuth", 3]}, True),
    ({"tags": ["oauth", 3]}, False),
    ({"tags": 4}, False),
    ({"tags": {"$contains": "OAuth"}}, True),
    ({"tags": {"$contains": "oauth"}}, False),
    ({"capabilities": {"$exists": True}}, True),
    ({"tags": "oauth", "busy": True}, False),
]


@pytest.mark.parametrize(("requirements", "expected"), TAG_CASES)
def test_tag_rule(requirements: dict[str, Any], expected: bool) -> None:
    assert compile_requirements(requirements)(TAGGED) is expected


@pytest.mark.parametrize(
    "metadata",
    [{}, {"tags": "oauth"}, {"tags": None}, {"capabilities": 7}, {"tags": [None, 1.5]}],
)
def test_tag_rule_without_a_tag_list_matches_nothing(metadata: dict[str, Any]) -> None:
    candidate = {**TAGGED, "metadata": metadata}
    assert compile_requirements({"tags": "oauth"})(candidate) is False
    assert compile_requirements({"capabilities": ["oauth"]})(candidate) is False


def test_tag_rule_on_a_candidate_without_metadata() -> None:
    candidate = {k: v for k, v in TAGGED.items() if k != "metadata"}
    assert compile_requirements({"tags": "oauth"})(candidate) is False
    assert compile_requirements({"tags": "oauth"})({**candidate, "metadata": ["oauth"]}) is False


def test_tag_set_reads_both_keys_lower_cased() -> None:
    assert tag_set(TAGGED["metadata"]) == {"oauth", "jwt", "gpu"}


def test_http_requirements_find_exactly_what_dns_answers_for_a_tag() -> None:
    """Discovery.tagged (DNS _<tag>._sub) and a tag requirement (HTTP) agree, over
    Instances as the server holds them."""
    ledger = Ledger()
    fleet: list[dict[str, Any]] = [
        {"tags": ["OAuth"]},
        {"tags": ["oauth", "jwt"]},
        {"capabilities": {"OAuth": True, "JWT": False}},
        {"capabilities": ["JWT"], "tags": {"gpu": True}},
        {"tags": "oauth"},
        {"tags": [1, "Gpu"]},
        {},
    ]
    for i, metadata in enumerate(fleet):
        ledger.register(InstanceSpec("auth", i, "127.0.0.1", 8000 + i, metadata=metadata))
    discovery = ledger.discovery
    for tag in ("oauth", "OAuth", "jwt", "gpu", "saml"):
        dns = discovery.tagged("auth", tag)
        assert dns == discovery.matching("auth", compile_requirements({"tags": tag}))
        assert dns == discovery.matching("auth", compile_requirements({"capabilities": [tag]}))
    ids = {t: [i.instance_id for i in discovery.tagged("auth", t)] for t in ("oauth", "jwt", "gpu")}
    assert ids == {"oauth": [0, 1, 2], "jwt": [1, 3], "gpu": [3, 5]}


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
