"""ServiceConfig and the environment variables the client reads."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jarvis_dns.models import Check, InstanceId, JSONObject

DEFAULT_SERVER_URL = "http://127.0.0.1:9000"
# The original JARVIS launcher numbered service ports from 5000: port = 5000 + instance id.
DEFAULT_BASE_PORT = 5000


@dataclass(slots=True)
class ServiceConfig:
    """One service instance to register.

    `port` defaults to the client's base_port + instance_id. `host` defaults to the
    client's HOST, and without one the server takes the address the request came
    from. `check` asks the server to probe the instance (DESIGN.md's check object);
    `health_path` makes the client probe it itself and report busy from the answer.
    """

    service_type: str
    instance_id: InstanceId
    port: int | None = None
    metadata: Mapping[str, Any] | None = None
    host: str | None = None
    busy: bool = False
    weight: int | None = None
    ttl_s: float | None = None
    check: Check | Mapping[str, Any] | None = None
    health_path: str | None = None
    deregister_after_s: float | None = None

    def resolve_port(self, base_port: int) -> int:
        if self.port is not None:
            return self.port
        if isinstance(self.instance_id, bool) or not isinstance(self.instance_id, int):
            raise ValueError(
                f"ServiceConfig for {self.service_type!r} needs a port: "
                "base_port + instance_id only works for an integer instance_id"
            )
        return base_port + self.instance_id

    def registration_body(self, base_port: int, default_host: str | None) -> JSONObject:
        """The POST /v1/instances body, without busy and status (the client owns those)."""
        body: JSONObject = {
            "service_type": self.service_type.strip().lower(),
            "instance_id": self.instance_id,
            "port": self.resolve_port(base_port),
            "metadata": dict(self.metadata or {}),
        }
        optional = {
            "host": self.host or default_host,
            "weight": self.weight,
            "ttl_s": self.ttl_s,
            "check": self.check.to_dict() if isinstance(self.check, Check) else self.check,
            "deregister_after_s": self.deregister_after_s,
        }
        for name, value in optional.items():
            if value is not None:
                body[name] = dict(value) if isinstance(value, Mapping) else value
        return body


def server_urls(dns_url: str | Sequence[str] | None) -> list[str]:
    """dns_url, else DNS_SERVER_URL, else the default; commas separate failover URLs."""
    raw = dns_url if dns_url is not None else os.environ.get("DNS_SERVER_URL") or DEFAULT_SERVER_URL
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    urls = [part.strip().rstrip("/") for part in parts if part.strip()]
    if not urls:
        raise ValueError("no registry URL given")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"registry URL must start with http:// or https://: {url!r}")
    return urls


def base_port(value: int | None) -> int:
    """base_port, else BASE_PORT, else 5000."""
    if value is not None:
        return value
    raw = os.environ.get("BASE_PORT", "").strip()
    if not raw:
        return DEFAULT_BASE_PORT
    if not raw.isdigit():
        raise ValueError(f"BASE_PORT must be a port number, not {raw!r}")
    return int(raw)


def advertised_host(value: str | None) -> str | None:
    """host, else HOST, else None (the server then takes the request's peer address)."""
    if value is not None:
        return value
    return os.environ.get("HOST", "").strip() or None
