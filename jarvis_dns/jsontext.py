"""JSON text on the hot paths: orjson where it can, the standard library where it cannot.

Every request parses a body and most answer an instance's JSON; with the standard
library that was about a fifth of a registration's CPU. orjson refuses a few things the
standard library takes (NaN and Infinity literals, lone surrogates, integers past 64 bits on
the way out) and reads integers past 64 bits as floats: those fall back to ``json``, so
what is accepted, and how it reads back, stays exactly the standard library's language.
Output is compact and UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# A run of 19 digits may be an integer orjson would read as a float (it keeps only
# -2**63 .. 2**64-1 exact): such text, rare in our bodies, goes to json. Found as 19
# zeros once every digit reads as zero: a third of what the regex \d{19} cost, on every
# request body.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def encode(value: Any, sort_keys: bool = False) -> str:
    """value as compact JSON text (non-ASCII as UTF-8, not \\u escapes)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits, a non-str key
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)


def decode(raw: bytes | str) -> Any:
    """JSON text as Python values; raises ValueError (or RecursionError) as json does."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _LONG_DIGITS not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def decode_gateway(raw: bytes | str) -> Any:
    """Text from a producer that writes no bare integer past 64 bits (etcd's JSON gateway
    writes every int64 as a string): orjson alone, ValueError when malformed."""
    return orjson.loads(raw)
