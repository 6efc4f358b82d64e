"""Settings: CLI flags, then JARVIS_DNS_* environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jarvis_dns.errors import ConfigError

DEFAULT_HTTP = "127.0.0.1:9000"
DEFAULT_DNS = "127.0.0.1:9053"
DEFAULT_DOMAIN = "jarvis.internal"
DEFAULT_DATA_DIR = "./.jarvis-dns"
# RFC 6891 / DNS flag day 2020: 1232 bytes avoids IP fragmentation on any path.
DEFAULT_MAX_UDP = 1232
ENV_PREFIX = "JARVIS_DNS_"
# Where active checks never go: link-local (cloud metadata lives there) and the
# metadata addresses that are not link-local (AWS over IPv6).
DEFAULT_CHECK_DENY = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
# Identical DNS answers a second to one /24 (IPv4) or /56 (IPv6) before response-rate
# limiting starts. BIND suggests 5-10 for Internet authoritatives, whose askers are
# caching resolvers; here the askers are often the services themselves, many in one
# /24, each asking the same few names once a TTL (5 s): 100 leaves 500 of them alone
# while a reflected flood gets at most 100 answers a second per target network.
DEFAULT_RRL_RPS = 100


@dataclass(slots=True)
class Config:
    http: str = DEFAULT_HTTP
    dns: list[str] = field(default_factory=lambda: [DEFAULT_DNS])
    domain: str = DEFAULT_DOMAIN
    store: str = ""  # empty: sqlite:///<data_dir>/registry.db
    data_dir: str = DEFAULT_DATA_DIR
    zones_dir: str = "zones"
    log_level: str = "info"
    log_format: str = "text"
    dns_ttl: int = 5
    dns_negative_ttl: int = 5
    max_udp_size: int = DEFAULT_MAX_UDP
    upstreams: list[str] = field(default_factory=list)
    upstream_timeout_s: float = 2.0
    check_interval_s: float = 60.0
    check_timeout_s: float = 5.0
    active_checks: bool = True
    checks_in_flight: int = 256
    deregister_after_s: float = 600.0
    self_preservation_threshold: float = 0.5
    event_log_size: int = 10_000
    liveness_flush_s: float = 1.0
    max_body_bytes: int = 64 * 1024
    dns_fast_path: bool = True
    # At most this many instances in a UDP answer, idle first, shuffled per answer, and
    # no TC=1: for clients that never retry over TCP (HAProxy). 0: all, TC when too big.
    udp_answer_limit: int = 0
    dns_cache: bool = True  # False: every DNS answer encoded anew (measures the miss path)
    # Cluster (etcd:// store): this node's name (empty: host:http-port) and the TTL of
    # its announcement, which is how soon a dead node's checks move to the others.
    node: str = ""
    node_ttl_s: float = 10.0
    # Security (README "Security"): ACL tokens, TLS, limits.
    acl: bool = False
    acl_anonymous: str = "none"  # none | read
    acl_bootstrap_token: str = ""  # empty: <data_dir>/acl-bootstrap-token, made once
    acl_refresh_s: float = 5.0  # etcd: how soon other nodes' new and revoked tokens apply
    insecure: bool = False  # allow an HTTP bind beyond loopback without --acl
    check_deny: list[str] = field(default_factory=lambda: list(DEFAULT_CHECK_DENY))
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Connections: a client (address) and all together; slowloris and idle cut-offs.
    http_max_connections: int = 4096
    http_max_connections_per_client: int = 256
    http_read_timeout_s: float = 10.0  # headers and body of one request
    http_idle_timeout_s: float = 30.0  # keep-alive between requests
    max_waiting_queries: int = 10_000  # blocking queries held at once (about 13 KiB each)
    max_instances: int = 1_000_000
    max_instances_per_service: int = 200_000
    # DNS (README "Security"): who is answered, rate limits, recursion, TCP caps, TLS.
    # Address lists take CIDRs, addresses and any, none, localhost, localnets.
    dns_allow: list[str] = field(default_factory=lambda: ["any"])
    rrl_rps: int = DEFAULT_RRL_RPS  # 0: off
    rrl_slip: int = 2  # every 2nd limited answer goes out empty with TC=1 (BIND's default)
    rrl_exempt: list[str] = field(default_factory=lambda: ["localhost"])
    recursion_allow: list[str] = field(default_factory=lambda: ["localhost", "localnets"])
    # DNS over TCP and TLS together. A forwarder pipelines many queries over one
    # connection (RFC 7766), so 64 from one address is plenty; 1024 in all keeps well
    # under a 4096 descriptor limit beside HTTP's.
    dns_tcp_max_connections: int = 1024
    dns_tcp_max_per_client: int = 64
    dot: list[str] = field(default_factory=list)  # DNS over TLS addresses (RFC 7858)
    # DNS UPDATE, zone transfers, NOTIFY (README "Register with nsupdate"): all off until
    # a key or an allow-list is given.
    tsig_keys: list[str] = field(default_factory=list)  # NAME:ALGORITHM:BASE64SECRET
    update_allow: list[str] = field(default_factory=list)  # KEYNAME:SERVICE_PATTERN
    transfer_allow: list[str] = field(default_factory=list)  # address list, key:KEYNAME
    notify: list[str] = field(default_factory=list)  # HOST:PORT of secondaries

    @property
    def zone(self) -> str:
        """The registry zone as an absolute, lower-case name ending in a dot."""
        return self.domain.strip(".").lower() + "."

    def node_name(self, http_port: int) -> str:
        if self.node:
            return self.node
        host, _ = split_hostport(self.http, 9000)
        return f"{host}:{http_port}"

    def store_url(self) -> str:
        if self.store:
            return self.store
        return f"sqlite:///{Path(self.data_dir).resolve() / 'registry.db'}"


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    """'h:p', '[v6]:p', 'h' or ':p' -> (host, port); raises ConfigError."""
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ConfigError(f"bad address {value!r}: missing ']'")
        host, rest = value[1:end], value[end + 1 :]
        if rest.startswith(":"):
            port = _port(value, rest[1:])
    elif value.count(":") == 1:
        host, raw = value.split(":")
        port = _port(value, raw)
    return host or "127.0.0.1", port


def _port(value: str, raw: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ConfigError(f"bad address {value!r}: port must be 0-65535")
    return int(raw)


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper(), default)
