"""ACL tokens (Consul's model, smaller): who may read or write which services.

A policy grants ``read`` or ``write`` per service name or ``*`` pattern, and
optionally ``management`` (tokens, zone reload, self-preservation release). Write
implies read. The most specific rule wins: an exact name, then the longest pattern.

A token is a random secret; only its SHA-256 is kept (stored and in memory), so a
leaked store file does not leak usable tokens. Each token also has a public
``accessor`` id, which is how it is listed and deleted.

Pure: no I/O. The HTTP layer asks ``Acl.policy(secret)`` per request; app.py loads
and saves the records.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jarvis_dns.errors import ConfigError, Forbidden, Unauthorized, ValidationError

NONE, READ, WRITE = 0, 1, 2
_LEVELS = {"none": NONE, "read": READ, "write": WRITE}
_NAMES = {v: k for k, v in _LEVELS.items()}
ANONYMOUS_CHOICES = ("none", "read")
BOOTSTRAP_ACCESSOR = "bootstrap"
MAX_RULES = 256
MAX_DESCRIPTION = 256


@dataclass(frozen=True, slots=True)
class Policy:
    """Levels per service name or fnmatch pattern; management covers everything."""

    services: Mapping[str, int] = field(default_factory=dict)
    management: bool = False

    def level(self, service_type: str) -> int:
        if self.management:
            return WRITE
        exact = self.services.get(service_type)
        if exact is not None:
            return exact
        best, best_len = NONE, -1
        for pattern, level in self.services.items():
            if len(pattern) > best_len and fnmatch.fnmatchcase(service_type, pattern):
                best, best_len = level, len(pattern)
        return best

    def can_read(self, service_type: str) -> bool:
        return self.level(service_type) >= READ

    def can_write(self, service_type: str) -> bool:
        return self.level(service_type) >= WRITE

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"services": {k: _NAMES[v] for k, v in self.services.items()}}
        if self.management:
            body["management"] = True
        return body


EVERYTHING = Policy(management=True)
ANONYMOUS = {"none": Policy(), "read": Policy({"*": READ})}


def parse_policy(body: Any, field_name: str = "policy") -> Policy:
    """{"services": {"auth": "write", "*": "read"}, "management": false} -> Policy."""
    if not isinstance(body, dict):
        raise ValidationError("must be an object", field=field_name)
    unknown = set(body) - {"services", "management"}
    if unknown:
        raise ValidationError("unknown field", field=f"{field_name}.{sorted(unknown)[0]}")
    raw = body.get("services", {})
    if not isinstance(raw, dict) or len(raw) > MAX_RULES:
        raise ValidationError(f"must be an object of at most {MAX_RULES} rules",
                              field=f"{field_name}.services")  # fmt: skip
    services: dict[str, int] = {}
    for pattern, level in raw.items():
        where = f"{field_name}.services.{pattern}"
        if not pattern or len(pattern) > 63 or not isinstance(level, str):
            raise ValidationError("a rule is a service name or pattern: read|write", field=where)
        if level not in ("read", "write"):
            raise ValidationError("must be read or write", field=where)
        services[pattern.lower()] = _LEVELS[level]
    management = body.get("management", False)
    if not isinstance(management, bool):
        raise ValidationError("must be true or false", field=f"{field_name}.management")
    return Policy(services, management)


def parse_rule(text: str) -> tuple[str, str]:
    """The CLI's --service 'auth:write' -> ("auth", "write")."""
    pattern, sep, level = text.rpartition(":")
    if not sep or not pattern or level not in ("read", "write"):
        raise ValueError(f"{text!r}: use SERVICE:read or SERVICE:write ('*' patterns allowed)")
    return pattern, level


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Token:
    """One stored token: never the secret itself, only its hash."""

    accessor: str
    secret_hash: str
    policy: Policy
    description: str = ""
    create_time: float = 0.0

    def public(self) -> dict[str, Any]:
        """What GET /v1/acl/tokens shows: everything but the hash."""
        return {
            "accessor": self.accessor,
            "description": self.description,
            "policy": self.policy.to_dict(),
            "create_time": self.create_time,
        }

    def to_record(self) -> dict[str, Any]:
        return {**self.public(), "secret_hash": self.secret_hash}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Token:
        return cls(
            accessor=str(d["accessor"]),
            secret_hash=str(d["secret_hash"]),
            policy=parse_policy(d.get("policy", {})),
            description=str(d.get("description", "")),
            create_time=float(d.get("create_time", 0.0)),
        )


def mint(policy: Policy, description: str, now: float) -> tuple[Token, str]:
    """A new token and its secret (shown once, to whoever asked for it)."""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ValidationError(f"must be a string of at most {MAX_DESCRIPTION} characters",
                              field="description")  # fmt: skip
    secret = new_secret()
    token = Token(secrets.token_hex(8), hash_secret(secret), policy, description, now)
    return token, secret


class Acl:
    """The tokens in force and the anonymous policy. Disabled: everyone may do anything."""

    def __init__(
        self,
        enabled: bool = False,
        anonymous: str = "none",
        bootstrap_secret: str | None = None,
        tokens: Iterable[Token] = (),
    ) -> None:
        if anonymous not in ANONYMOUS:
            raise ConfigError(f"--acl-anonymous must be none or read, not {anonymous!r}")
        self.enabled = enabled
        self.anonymous = ANONYMOUS[anonymous]
        self._by_hash: dict[str, Token] = {}
        self._bootstrap_hash = hash_secret(bootstrap_secret) if bootstrap_secret else None
        for token in tokens:
            self.add(token)

    def add(self, token: Token) -> None:
        self._by_hash[token.secret_hash] = token

    def replace(self, tokens: Iterable[Token]) -> None:
        """All tokens at once, as read again from a shared store."""
        self._by_hash = {t.secret_hash: t for t in tokens}

    def remove(self, accessor: str) -> Token | None:
        for secret_hash, token in self._by_hash.items():
            if token.accessor == accessor:
                return self._by_hash.pop(secret_hash)
        return None

    def tokens(self) -> list[Token]:
        return sorted(self._by_hash.values(), key=lambda t: (t.create_time, t.accessor))

    def policy(self, secret: str | None) -> Policy | None:
        """The policy of a presented secret; None when no secret was presented (the
        caller then acts as anonymous); Unauthorized for a secret nobody issued."""
        if not self.enabled:
            return EVERYTHING
        if secret is None:
            return None
        digest = hash_secret(secret)
        if self._bootstrap_hash is not None and hmac.compare_digest(digest, self._bootstrap_hash):
            return EVERYTHING
        token = self._by_hash.get(digest)
        if token is None:
            raise Unauthorized("unknown token", field="Authorization")
        return token.policy

    def effective(self, secret: str | None) -> Policy:
        policy = self.policy(secret)
        return self.anonymous if policy is None else policy


def require(policy: Policy | None, allowed: bool, what: str) -> None:
    """Raise 401 (no token, and anonymous may not) or 403 (a token that may not)."""
    if allowed:
        return
    if policy is None:
        raise Unauthorized(f"a token is required to {what}", field="Authorization")
    raise Forbidden(f"this token may not {what}", field="Authorization")
