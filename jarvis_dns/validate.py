"""Turn untrusted JSON into typed commands, or raise ValidationError naming the field.

Pure: the HTTP layers call these before anything touches the registry, so a bad
request can never leave half a change behind.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Mapping
from typing import Any

from jarvis_dns import jsontext
from jarvis_dns.errors import ValidationError
from jarvis_dns.models import (
    DEFAULT_TTL_S,
    DEFAULT_WEIGHT,
    Check,
    InstanceId,
    InstanceSpec,
    JSONObject,
    Status,
)

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# DNS-SD spells a type `_<svc>`: one byte more than the name, and a label holds 63.
MAX_SERVICE_TYPE = 62
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
MAX_METADATA_BYTES = 16 * 1024  # fits many TXT strings, small enough to keep 100k in RAM
MAX_METADATA_DEPTH = 8
MAX_TTL_S = 86_400.0
MIN_TTL_S = 1.0
MIN_CHECK_INTERVAL_S = 1.0  # faster probing would be a self-inflicted DoS

REGISTER_FIELDS = frozenset(
    {
        "service_type",
        "instance_id",
        "host",
        "port",
        "metadata",
        "weight",
        "busy",
        "status",
        "ttl_s",
        "check",
        "deregister_after_s",
    }
)


def require_object(body: Any, field: str | None = None) -> JSONObject:
    if not isinstance(body, dict):
        raise ValidationError("must be a JSON object", field=field or "body")
    return body


def service_type(value: Any, field: str = "service_type") -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("must be a non-empty string", field=field)
    folded = value.lower()
    if not _LABEL.match(folded) or len(folded) > MAX_SERVICE_TYPE:
        raise ValidationError(
            "must be a DNS label: a-z, 0-9 and '-', 1-62 characters (DNS-SD adds '_'), "
            "no leading or trailing '-'",
            field=field,
        )
    return folded


def instance_id(value: Any, field: str = "instance_id") -> InstanceId:
    if isinstance(value, bool):
        raise ValidationError("must be an integer >= 0 or a DNS label", field=field)
    if isinstance(value, int):
        if not 0 <= value < 10**63:  # its digits are a DNS label: 63 at most
            raise ValidationError("must be an integer >= 0 or a DNS label", field=field)
        return value
    if isinstance(value, str) and value and len(value) <= 63:
        if value.isascii() and value.isdigit():
            return int(value)  # "7" and 7 are the same instance: one DNS label
        folded = value.lower()
        if _LABEL.match(folded):
            return folded
    raise ValidationError("must be an integer >= 0 or a DNS label", field=field)


def host(value: Any, field: str = "host") -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("must be an IP address or a hostname", field=field)
    if value != _UNSPECIFIED_V4 and _is_dotted_quad(value):
        return value  # the common case, already canonical; ipaddress costs 10x more
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return _hostname(value, field)
    if address.is_unspecified or (address.version == 6 and "%" in value):
        raise ValidationError("must be an address others can reach (no 0.0.0.0, ::, or %zone)",
                              field=field)  # fmt: skip
    return str(address)


_UNSPECIFIED_V4 = "0.0.0.0"


def _is_dotted_quad(value: str) -> bool:
    """Canonical dotted-decimal IPv4 (no leading zeros, exactly four parts), as
    ipaddress accepts and prints it."""
    try:
        socket.inet_pton(socket.AF_INET, value)
    except OSError:
        return False
    return True


def _hostname(value: str, field: str) -> str:
    name = value.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(p) for p in labels):
        raise ValidationError("must be an IP address or a hostname", field=field)
    if all(p.isdigit() for p in labels):  # 999.1.1.1 is a broken address, not a name
        raise ValidationError("must be an IP address or a hostname", field=field)
    return name.lower()


def integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"must be an integer from {low} to {high}", field=field)
    return value


def number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"must be a number from {low:g} to {high:g}", field=field)
    # Compare before isfinite: a huge JSON integer overflows a float.
    if not low <= value <= high or not math.isfinite(value):
        raise ValidationError(f"must be a number from {low:g} to {high:g}", field=field)
    return float(value)


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false", field=field)
    return value


def status(value: Any, field: str = "status") -> Status:
    found = _STATUSES.get(value) if isinstance(value, str) else None
    if found is None:
        raise ValidationError("must be active, dead or maintenance", field=field)
    return found


_STATUSES = {s.value: s for s in Status}  # a fifth of what Status(value) costs


_SCALARS = (str, int, float, bool, type(None))


def _shape_error(value: Any, limit: int) -> str | None:
    """Why a JSON value cannot be kept, or None: containers nest more than `limit`
    levels, or a number JSON cannot carry (NaN, infinity; the parser takes them). One
    walk, level by level, so any depth is safe and a registration pays for one pass."""
    level: list[Any] = [value]
    finite = True
    for _ in range(limit + 1):
        nested: list[Any] = []
        for c in level:
            for v in c.values() if isinstance(c, dict) else c:
                kind = type(v)
                if kind is str or kind is int or kind is bool or v is None:
                    continue
                if kind is float:
                    finite = finite and math.isfinite(v)
                elif isinstance(v, dict | list):
                    nested.append(v)
        if not nested:
            return None if finite else "holds a number JSON cannot carry"
        level = nested
    return f"nests deeper than {limit + 1} levels"


def _finite_scalars(value: dict[str, Any]) -> bool:
    """A flat object of JSON scalars with no NaN or infinity: the common metrics shape."""
    for v in value.values():
        kind = type(v)
        if kind is float:
            if not math.isfinite(v):
                return False
        elif kind is int:
            if not -(2**63) <= v < 2**63:
                return False
        elif kind not in _SCALARS:
            return False
    return True


def json_object(value: Any, field: str, max_bytes: int = MAX_METADATA_BYTES) -> JSONObject:
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object", field=field)
    error = _shape_error(value, MAX_METADATA_DEPTH - 1)
    if error is not None:
        raise ValidationError(error, field=field)
    size = len(jsontext.encode(value).encode())
    if size > max_bytes:
        raise ValidationError(f"is {size} bytes encoded; the limit is {max_bytes}", field=field)
    return value


def check(value: Any, field: str = "check") -> Check | None:
    if value is None:
        return None
    body = require_object(value, field)
    unknown = set(body) - set(Check.__dataclass_fields__)
    if unknown:
        raise ValidationError("unknown field", field=f"{field}.{sorted(unknown)[0]}")
    kind = body.get("type", "http")
    if kind not in ("http", "tcp"):
        raise ValidationError("must be http or tcp", field=f"{field}.type")
    path = body.get("path", "/health")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 1024:
        raise ValidationError("must be a path starting with '/'", field=f"{field}.path")
    interval, timeout = body.get("interval_s"), body.get("timeout_s")
    return Check(
        type=kind,
        path=path,
        interval_s=None
        if interval is None
        else number(interval, f"{field}.interval_s", MIN_CHECK_INTERVAL_S, 86_400),
        timeout_s=None if timeout is None else number(timeout, f"{field}.timeout_s", 0.05, 300),
        failures_before_dead=integer(
            body.get("failures_before_dead", 3), f"{field}.failures_before_dead", 1, 100
        ),
        successes_before_active=integer(
            body.get("successes_before_active", 1), f"{field}.successes_before_active", 1, 100
        ),
    )


def _weight(body: Mapping[str, Any], metadata: JSONObject) -> int:
    if "weight" in body:
        return integer(body["weight"], "weight", 1, 65535)
    if "weight" in metadata:
        return integer(metadata["weight"], "metadata.weight", 1, 65535)
    return DEFAULT_WEIGHT


def _required(body: Mapping[str, Any], name: str) -> Any:
    if name not in body or body[name] is None:
        raise ValidationError("is required", field=name)
    return body[name]


def register_body(body: Any, peer: str | None) -> InstanceSpec:
    """Validate a v1 registration body; `peer` fills a missing host."""
    body = require_object(body)
    unknown = set(body) - REGISTER_FIELDS
    if unknown:
        raise ValidationError("unknown field", field=sorted(unknown)[0])
    raw_metadata = body.get("metadata")
    metadata = {} if raw_metadata is None else json_object(raw_metadata, "metadata")
    raw_host = body.get("host")
    if raw_host is None:
        if not peer:
            raise ValidationError("is required (the peer address is unknown)", field="host")
        raw_host = peer
    dereg = body.get("deregister_after_s")
    return InstanceSpec(
        service_type=service_type(_required(body, "service_type")),
        instance_id=instance_id(_required(body, "instance_id")),
        host=host(raw_host),
        port=integer(_required(body, "port"), "port", 1, 65535),
        metadata=metadata,
        weight=_weight(body, metadata),
        busy=boolean(body.get("busy", False), "busy"),
        status=status(body.get("status", "active")),
        ttl_s=number(body.get("ttl_s", DEFAULT_TTL_S), "ttl_s", MIN_TTL_S, MAX_TTL_S),
        check=check(body.get("check")),
        deregister_after_s=None
        if dereg is None
        else number(dereg, "deregister_after_s", 0, 30 * 86_400),
    )


def optional_busy(body: Mapping[str, Any]) -> bool | None:
    value = body.get("busy")
    return None if value is None else boolean(value, "busy")


MAX_METRICS_BYTES = 4096  # latest metrics only: a snapshot, not a time series


def optional_metrics(body: Mapping[str, Any], body_bytes: int | None = None) -> JSONObject | None:
    """`body_bytes`, the encoded size of the whole body, lets a small body skip re-encoding:
    the metrics inside it cannot be larger (the heartbeat hot path)."""
    value = body.get("metrics")
    if value is None:
        return None
    small = body_bytes is not None and body_bytes <= MAX_METRICS_BYTES
    if small and type(value) is dict and _finite_scalars(value):
        return value
    return json_object(value, "metrics", MAX_METRICS_BYTES)


def optional_status(body: Mapping[str, Any]) -> Status | None:
    value = body.get("status")
    return None if value is None else status(value)


def only_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError("unknown field", field=sorted(unknown)[0])
