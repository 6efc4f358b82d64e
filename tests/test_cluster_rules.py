"""Rendezvous hashing: one owner per instance, an even split, minimal movement."""

from __future__ import annotations

from collections import Counter

from jarvis_dns.cluster import Solo, owner

KEYS = [("svc-" + str(i % 7), str(i)) for i in range(3000)]


def test_every_node_computes_the_same_owner_whatever_the_member_order() -> None:
    for key in KEYS[:200]:
        assert owner(key, ["a", "b", "c"]) == owner(key, ["c", "a", "b"])


def test_the_split_is_even() -> None:
    shares = Counter(owner(key, ["a", "b", "c"]) for key in KEYS)
    assert set(shares) == {"a", "b", "c"}
    assert all(800 < n < 1200 for n in shares.values())  # 1000 each, give or take


def test_a_leaving_node_moves_only_its_own_share() -> None:
    before = {key: owner(key, ["a", "b", "c"]) for key in KEYS}
    after = {key: owner(key, ["a", "c"]) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved and all(before[key] == "b" for key in moved)
    assert len(moved) == sum(1 for key in KEYS if before[key] == "b")


def test_no_node_no_owner_and_a_solo_node_owns_and_leads() -> None:
    assert owner(("svc", "1"), []) is None
    solo = Solo("n1")
    assert solo.owns(("svc", "1")) and solo.leading and list(solo.members) == ["n1"]
