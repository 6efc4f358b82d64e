"""Discovery requirements and selection strategies (pure).

Requirements are a JSON object. For each key:

* ``busy`` and ``status`` mean the instance's own fields; any other key is looked up in
  its metadata (``"a.b"`` reaches into nested objects when no key ``"a.b"`` exists).
* a scalar means equal (or, when the instance holds a list, "the list contains it");
* a list means the instance's list contains every item;
* an object of ``$`` operators applies each (``$eq $ne $gt $gte $lt $lte $in $nin
  $contains $exists``).

Matching is strict: no match means none, never a fallback to "anything". The same
code runs on the server (over Instances) and in the client (over JSON dicts).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from jarvis_dns import jsontext
from jarvis_dns.errors import ValidationError
from jarvis_dns.models import Instance, JSONObject

STRATEGIES = ("round_robin", "random", "weighted", "least_loaded", "consistent_hash")
DEFAULT_STRATEGY = "round_robin"
OWN_FIELDS = ("busy", "status")
# Metadata keys read by the tag rule (tag_set): DNS answers them as _<tag>._sub names.
TAG_KEYS = ("tags", "capabilities")

_MISSING = object()


class Candidate(Protocol):
    """Anything matching can look at: an Instance or its JSON dict."""


C = TypeVar("C", Instance, Mapping[str, Any])
Predicate = Callable[[Any], bool]


def _field(candidate: Instance | Mapping[str, Any], name: str) -> Any:
    if type(candidate) is Instance:
        if name == "status":
            return candidate.status.value
        return getattr(candidate, name)
    value = candidate.get(name, _MISSING)  # type: ignore[union-attr]
    if name == "weight" and value is _MISSING:
        return 100
    return value


def _metadata_value(metadata: Mapping[str, Any], key: str) -> Any:
    value = metadata.get(key, _MISSING)
    if value is not _MISSING or "." not in key:
        return value
    node: Any = metadata
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _value(candidate: Instance | Mapping[str, Any], key: str) -> Any:
    if key in OWN_FIELDS:
        return _field(candidate, key)
    if type(candidate) is Instance:
        return _metadata_value(candidate.metadata, key)
    metadata = candidate.get("metadata")  # type: ignore[union-attr]
    if not isinstance(metadata, Mapping):
        return _MISSING
    return _metadata_value(metadata, key)


def tag_set(metadata: Mapping[str, Any]) -> frozenset[str]:
    """The tag rule: lower-cased tags from metadata.tags and metadata.capabilities, each a
    list of strings or an object whose true values name tags ({"OAuth": true})."""
    found: set[str] = set()
    for key in TAG_KEYS:
        value = metadata.get(key)
        if isinstance(value, list):
            found.update(v.lower() for v in value if isinstance(v, str))
        elif isinstance(value, Mapping):
            found.update(str(k).lower() for k, v in value.items() if v)
    return frozenset(found)


def _tags(candidate: Instance | Mapping[str, Any]) -> frozenset[str]:
    if type(candidate) is Instance:
        return tag_set(candidate.metadata)
    metadata = candidate.get("metadata")  # type: ignore[union-attr]
    return tag_set(metadata) if isinstance(metadata, Mapping) else frozenset()


def _tag_clause(want: Any) -> Predicate | None:
    """`{"tags": "x"}` or `{"capabilities": ["x", "y"]}`: the tag rule, so HTTP finds
    exactly what DNS answers for _x._sub. None when the wanted items are not all strings
    (the generic rule applies)."""
    items = want if isinstance(want, list) else [want]
    if not items or not all(isinstance(i, str) for i in items):
        return None
    wanted = frozenset(i.lower() for i in items)
    return lambda c: wanted <= _tags(c)


def _compare(op: str, have: Any, want: Any) -> bool:
    if isinstance(have, bool) or isinstance(want, bool):
        return False  # ordering booleans is a bug in the requirement, not a match
    try:
        if op == "$gt":
            return bool(have > want)
        if op == "$gte":
            return bool(have >= want)
        if op == "$lt":
            return bool(have < want)
        return bool(have <= want)
    except TypeError:
        return False


def _contains(have: Any, item: Any) -> bool:
    if isinstance(have, list):
        return item in have
    if isinstance(have, str) and isinstance(item, str):
        return item in have
    return False


def _equal(have: Any, want: Any) -> bool:
    if type(have) is type(want):  # the common case, and the fast one
        return bool(have == want)
    # JSON has one number type: 1 == 1.0, but True is not 1.
    if isinstance(have, bool) != isinstance(want, bool):
        return False
    return bool(have == want)


def _apply_operator(op: str, have: Any, want: Any) -> bool:
    if op == "$exists":
        return (have is not _MISSING) == bool(want)
    if have is _MISSING:
        return op == "$ne" or op == "$nin"
    if op == "$eq":
        return _equal(have, want)
    if op == "$ne":
        return not _equal(have, want)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _compare(op, have, want)
    if op == "$in":
        return any(_equal(have, w) for w in want)
    if op == "$nin":
        return not any(_equal(have, w) for w in want)
    return _contains(have, want)  # $contains


_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$exists")


def _check_operators(key: str, ops: Mapping[str, Any]) -> None:
    for op, operand in ops.items():
        if op not in _OPERATORS:
            raise ValidationError(f"unknown operator {op!r}", field=f"requirements.{key}")
        if op in ("$in", "$nin") and not isinstance(operand, list):
            raise ValidationError(f"{op} takes a list", field=f"requirements.{key}")
        if op == "$exists" and not isinstance(operand, bool):
            raise ValidationError("$exists takes true or false", field=f"requirements.{key}")


def _is_operator_object(want: Any) -> bool:
    return isinstance(want, Mapping) and bool(want) and all(k.startswith("$") for k in want)


def _clause(key: str, want: Any) -> Predicate:
    if key in TAG_KEYS and (tagged := _tag_clause(want)) is not None:
        return tagged
    if _is_operator_object(want):
        _check_operators(key, want)
        ops = list(want.items())
        return lambda c: all(_apply_operator(op, _value(c, key), w) for op, w in ops)
    if isinstance(want, list):
        items = list(want)
        return lambda c: (
            all(_contains(_value(c, key), i) for i in items) and isinstance(_value(c, key), list)
        )

    def scalar(c: Any) -> bool:
        have = _value(c, key)
        if type(have) is list:
            return _contains(have, want)
        return _equal(have, want)

    return scalar


def compile_requirements(requirements: JSONObject | None) -> Predicate:
    """Turn requirements into a predicate; malformed ones raise ValidationError."""
    if requirements is None:
        return lambda c: True
    if not isinstance(requirements, Mapping):
        raise ValidationError("requirements must be a JSON object", field="requirements")
    clauses = [_clause(str(k), v) for k, v in requirements.items()]
    if len(clauses) == 1:
        return clauses[0]

    return lambda c: all([clause(c) for clause in clauses])


_COMPILED: dict[str, Predicate] = {}
COMPILED_CACHE_SIZE = 1024


def canonical(requirements: JSONObject | None) -> str:
    """One text per meaning ({"a":1,"b":2} == {"b":2,"a":1}): the key of query caches."""
    return jsontext.encode(requirements, sort_keys=True)


def compile_cached(requirements: JSONObject | None) -> tuple[str, Predicate]:
    """compile_requirements, remembered by canonical text; returns (key, predicate)."""
    key = canonical(requirements)
    predicate = _COMPILED.get(key)
    if predicate is None:
        predicate = compile_requirements(requirements)
        if len(_COMPILED) >= COMPILED_CACHE_SIZE:
            _COMPILED.clear()
        _COMPILED[key] = predicate
    return key, predicate


def check_strategy(strategy: str | None, key: str | None) -> str:
    """Validate a strategy name (and its key); returns the name to use."""
    name = strategy or DEFAULT_STRATEGY
    if name not in STRATEGIES:
        raise ValidationError(f"strategy must be one of {', '.join(STRATEGIES)}", "strategy")
    if name == "consistent_hash" and not key:
        raise ValidationError("consistent_hash needs a key", field="key")
    return name


def _candidate_key(c: Instance | Mapping[str, Any]) -> str:
    return f"{_field(c, 'service_type')}/{_field(c, 'instance_id')}"


def load_of(c: Instance | Mapping[str, Any]) -> float:
    """Load score for least_loaded: metrics.load, else cpu_usage, else connections."""
    metrics = _field(c, "metrics")
    if not isinstance(metrics, Mapping):
        return 0.0
    for name in ("load", "cpu_usage", "connections"):
        value = metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _as_load(value)
    return 0.0


def _as_load(value: float) -> float:
    # A huge or NaN load reads as the worst load, never as an error or a best match.
    try:
        load = float(value)
    except OverflowError:
        return math.inf
    return math.inf if load != load else load


def _load_rank(c: Instance | Mapping[str, Any]) -> tuple[bool, float, str]:
    return bool(_field(c, "busy")), load_of(c), _candidate_key(c)


def _rendezvous(key: str, c: Instance | Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(f"{key}\x00{_candidate_key(c)}".encode(), digest_size=8).digest()


class Selector:
    """Chooses one instance among candidates; keeps round-robin cursors per service."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._cursors: dict[str, itertools.count[int]] = {}

    def select(self, strategy: str, candidates: Sequence[C], key: str | None = None) -> C | None:
        if not candidates:
            return None
        # Candidates come in the registry's stable (registration) order: no sort needed.
        ordered = candidates
        if strategy == "random":
            return self._rng.choice(ordered)
        if strategy == "weighted":
            weights = [max(1, int(_field(c, "weight") or 1)) for c in ordered]
            return self._rng.choices(ordered, weights=weights, k=1)[0]
        if strategy == "least_loaded":
            return min(
                ordered, key=lambda c: (bool(_field(c, "busy")), load_of(c), _candidate_key(c))
            )
        if strategy == "consistent_hash":
            return max(ordered, key=lambda c: _rendezvous(key or "", c))
        service = str(_field(ordered[0], "service_type"))
        cursor = self._cursors.setdefault(service, itertools.count())
        return ordered[next(cursor) % len(ordered)]
