"""validate.json_object: the shape a kept JSON object may have (metadata, metrics), found
in one walk: at most MAX_METADATA_DEPTH levels of nesting, no number JSON cannot carry,
and depth named first when both are wrong."""

from __future__ import annotations

import math
from typing import Any

import pytest

from jarvis_dns.errors import ValidationError
from jarvis_dns.validate import MAX_METADATA_DEPTH, json_object


def nested(levels: int, leaf: Any = 1) -> dict[str, Any]:
    """An object whose containers nest `levels` deep (the object itself is level 1)."""
    value: Any = leaf
    for n in range(levels):
        value = {"k": value} if n % 2 else [value]
    return value if isinstance(value, dict) else {"k": value}


def refused(value: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        json_object(value, "metadata")
    assert caught.value.field == "metadata"
    return str(caught.value)


def test_objects_as_deep_as_the_limit_are_kept() -> None:
    value = nested(MAX_METADATA_DEPTH)
    assert json_object(value, "metadata") is value


def test_one_level_more_is_refused_by_name() -> None:
    assert f"nests deeper than {MAX_METADATA_DEPTH} levels" in refused(
        nested(MAX_METADATA_DEPTH + 1)
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("levels", [1, 3, MAX_METADATA_DEPTH])
def test_numbers_json_cannot_carry_are_refused_at_any_depth(bad: float, levels: int) -> None:
    assert "holds a number JSON cannot carry" in refused(nested(levels, leaf=bad))


def test_depth_is_named_before_a_bad_number_found_higher_up() -> None:
    value = {"nan": math.nan, "deep": nested(MAX_METADATA_DEPTH + 1)}
    assert "nests deeper" in refused(value)


def test_a_very_deep_object_is_refused_without_recursion() -> None:
    assert "nests deeper" in refused(nested(100_000))


def test_finite_floats_and_scalars_of_every_kind_pass() -> None:
    value = {"f": 1.5, "i": 2**62, "b": True, "n": None, "s": "x", "l": [0.0, -1e300, {}]}
    assert json_object(value, "metadata") is value
