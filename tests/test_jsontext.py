"""jsontext takes exactly the standard library's JSON language, faster where it can."""

from __future__ import annotations

import json
import math

import pytest

from jarvis_dns import jsontext


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True, "x"], "b": {"c": {}}},
        {"big": 10**30, "neg": -(10**25)},  # past 64 bits: orjson refuses, json carries
        {"é": "snow ☃"},
        [],
    ],
)
def test_encode_reads_back_as_the_standard_library_reads_it(value: object) -> None:
    text = jsontext.encode(value)
    assert json.loads(text) == value
    assert ", " not in text and ": " not in text  # compact


def test_non_ascii_is_written_as_utf8_not_escapes() -> None:
    assert jsontext.encode({"k": "é"}) == '{"k":"é"}'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"x": 1}',
        b'{"x": 10000000000000000000000000}',
        b"[-9223372036854775809]",
        b'{"x": NaN}',
        b'["\\ud800"]',
        "[1]",
    ],
)
def test_decode_takes_what_json_takes(raw: bytes | str) -> None:
    got, want = jsontext.decode(raw), json.loads(raw)
    if isinstance(want, dict) and isinstance(want.get("x"), float):
        assert math.isnan(got["x"]) and math.isnan(want["x"])
    else:
        assert got == want


@pytest.mark.parametrize("raw", [b"[1,", b"{'x': 1}", b"", b"\xff"])
def test_decode_refuses_what_json_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        jsontext.decode(raw)
