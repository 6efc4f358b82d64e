"""Settings: one table (``SETTINGS``) that makes Config's defaults, the `serve` flags, the
JARVIS_DNS_* environment variables, `serve --print-config` and docs/operations.md's table.

A setting comes from its flag, else its environment variable, else its default. Each
row names the Config field, its default (whose type is the setting's type), what it is
for, and the flag when it is not ``--<field with - for _>``. The environment variable is
the flag's name: ``--upstream-timeout`` is ``JARVIS_DNS_UPSTREAM_TIMEOUT``. A list setting
is a repeatable flag, comma-separated in the environment. A bool setting is a flag that
turns it away from its default (``--acl``, ``--no-active-checks``); in the environment
1/true/yes turns it. tests/test_config.py keeps Config, the flags and the docs equal to it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jarvis_dns.acl import ANONYMOUS_CHOICES
from jarvis_dns.errors import ConfigError
from jarvis_dns.logs import LEVELS

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
# Address lists (--dns-allow, --rrl-exempt, --recursion-allow) take these.
_LISTS = "CIDRs or addresses, and any, none, localhost, localnets"
TRUE = ("1", "true", "yes")
FALSE = ("0", "false", "no", "")

Value = str | int | float | bool | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # the Config field
    default: Value  # a tuple for a list setting
    help: str
    group: str
    flag: str = ""  # empty: --<name with - for _>
    choices: tuple[str, ...] = ()
    shown: str = ""  # the default as the docs say it, when its value alone is not telling
    secret: bool = False  # --print-config shows it as ***
    metavar: str = ""  # what --help shows for its value; empty: the flag's name

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.option[2:].upper().replace("-", "_")

    @property
    def kind(self) -> type:
        return list if isinstance(self.default, tuple) else type(self.default)

    def value(self, raw: str) -> Any:
        """An environment variable's text as this setting's value; ValueError if bad."""
        if self.kind is bool:
            if raw.lower() not in TRUE + FALSE:
                raise ValueError(raw)
            return (raw.lower() in TRUE) != self.default
        if self.kind is list:
            return [v.strip() for v in raw.split(",") if v.strip()]
        value = self.kind(raw)
        if self.choices and value not in self.choices:
            raise ValueError(raw)
        return value

    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if isinstance(self.default, tuple):
            return ",".join(self.default) or "none"
        if isinstance(self.default, bool):
            return "off" if self.option.startswith("--no-") == self.default else "on"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


S = Setting
# Groups of `serve --help`.
NET, DNS, HEALTH, STORE = "listening and logging", "DNS", "liveness", "store and cluster"
SEC, DNS_SEC, DNS_OPS = "security", "DNS security", "DNS UPDATE and zone transfers"
LIMITS = "limits"
SETTINGS: tuple[Setting, ...] = (
    # -- where it listens and what it serves
    S("http", DEFAULT_HTTP, "HTTP API address host:port", NET),
    S("dns", (DEFAULT_DNS,), "DNS address host:port, UDP and TCP; IPv6 as [::1]:9053", NET),
    S("domain", DEFAULT_DOMAIN, "the registry zone", NET),
    S("zones_dir", "zones", "directory of BIND *.zone files served authoritatively", NET),
    S("log_level", "info", "how much to log: " + ", ".join(LEVELS), NET, choices=LEVELS),
    S("log_format", "text", "text, or json for one JSON object a line", NET,
      choices=("text", "json")),
    # -- storage and the cluster
    S("store", "", "memory://, sqlite:///path, or etcd://h1:2379,h2:2379[?prefix=/jarvis-dns] "
      "for a cluster of nodes sharing one etcd", STORE, shown="sqlite:///<data-dir>/registry.db"),
    S("data_dir", DEFAULT_DATA_DIR, "where the SQLite store and the bootstrap token live",
      STORE),
    S("event_log_size", 10_000, "events kept (persisted)", STORE),
    S("liveness_flush_s", 1.0, "seconds between writes of heartbeat times, metrics and busy "
      "flips: at most this much liveness is lost in a crash", STORE, flag="--liveness-flush"),
    S("node", "", "this node's name in a cluster (etcd:// store)", STORE,
      shown="host:http-port"),
    S("node_ttl_s", 10.0, "seconds a dead node keeps its share of the checks", STORE,
      flag="--node-ttl"),
    # -- DNS answers
    S("dns_ttl", 5, "TTL of DNS answers, seconds", DNS),
    S("dns_negative_ttl", 5, "negative-answer TTL (SOA minimum), seconds", DNS),
    S("max_udp_size", DEFAULT_MAX_UDP, "largest UDP answer with EDNS(0), bytes", DNS),
    S("udp_answer_limit", 0, "at most this many instances per UDP answer, idle first, "
      "shuffled, no TC (for clients that never retry over TCP); 0: all, TC=1 when too big",
      DNS),
    S("upstreams", (), "forward names outside every zone to IP[:port]", DNS, flag="--upstream",
      shown="none: REFUSED"),
    S("upstream_timeout_s", 2.0, "seconds before a forwarded query gets SERVFAIL", DNS,
      flag="--upstream-timeout"),
    S("dns_fast_path", True, "answer every DNS query through dnslib (slow; for comparison)",
      DNS, flag="--no-fast-path"),
    S("dns_cache", True, "encode every DNS answer anew (measures the miss path)", DNS,
      flag="--no-dns-cache"),
    # -- liveness
    S("check_interval_s", 60.0, "default active-check interval, seconds", HEALTH,
      flag="--check-interval"),
    S("check_timeout_s", 5.0, "default active-check timeout, seconds", HEALTH,
      flag="--check-timeout"),
    S("active_checks", True, "only heartbeats decide liveness", HEALTH,
      flag="--no-active-checks"),
    S("checks_in_flight", 256, "bound on concurrent active checks", HEALTH),
    S("deregister_after_s", 600.0, "remove instances dead this long, seconds", HEALTH,
      flag="--deregister-after"),
    S("self_preservation_threshold", 0.5, "hold TTL expiry when more than this share of live "
      "instances would expire within one TTL; 0 disables", HEALTH),
    # -- who may do what
    S("acl", False, "require ACL tokens on the HTTP API (docs/security.md)", SEC),
    S("acl_anonymous", "none", "policy of a request without a token: none or read", SEC,
      choices=ANONYMOUS_CHOICES),
    S("acl_bootstrap_token", "", "the management token", SEC,
      shown="made once in <data-dir>/acl-bootstrap-token", secret=True),
    S("acl_refresh_s", 5.0, "etcd: seconds before other nodes' new and revoked tokens apply",
      SEC, flag="--acl-refresh"),
    S("insecure", False, "allow an HTTP bind beyond loopback without --acl", SEC),
    S("check_deny", DEFAULT_CHECK_DENY, "networks (CIDR) active checks never reach", SEC),
    S("tls_cert", "", "PEM certificate chain: serve HTTPS (and DNS over TLS, --dot)", SEC,
      shown="none: plain HTTP"),
    S("tls_key", "", "PEM private key of --tls-cert", SEC, shown="none"),
    S("tls_client_ca", "", "PEM CA bundle: require client certificates it signed", SEC,
      shown="none"),
    # -- limits
    S("http_fast_lane", True, "answer heartbeats, flips, discover and register through "
      "aiohttp's request objects too (slower; for comparison)", LIMITS,
      flag="--no-http-fast-lane"),
    S("http_max_connections", 4096, "open HTTP connections in all", LIMITS),
    S("http_max_connections_per_client", 256, "open HTTP connections per client address",
      LIMITS),
    S("http_read_timeout_s", 10.0, "seconds for a request's headers (and again for its body)",
      LIMITS, flag="--http-read-timeout"),
    S("http_idle_timeout_s", 30.0, "seconds a keep-alive connection may idle", LIMITS,
      flag="--http-idle-timeout"),
    S("max_body_bytes", 64 * 1024, "largest request body, bytes; 413 past it", LIMITS),
    S("max_waiting_queries", 10_000, "blocking queries waiting at once (about 13 KiB each); "
      "503 past it", LIMITS),
    S("max_instances", 1_000_000, "instances in all; 507 past it", LIMITS),
    S("max_instances_per_service", 200_000, "instances per service; 507 past it", LIMITS),
    # -- who is answered over DNS, how often, over what
    S("dns_allow", ("any",), f"who gets DNS answers; others get REFUSED ({_LISTS})", DNS_SEC),
    S("rrl_rps", DEFAULT_RRL_RPS, "response-rate limiting: identical UDP answers a second to "
      "one /24 or /56 before answers are slipped or dropped; 0: off", DNS_SEC),
    S("rrl_slip", 2, "send every Nth limited answer empty with TC=1 (the client retries over "
      "TCP; BIND's default), drop the others; 0: drop all", DNS_SEC),
    S("rrl_exempt", ("localhost",), f"clients never rate-limited ({_LISTS})", DNS_SEC),
    S("recursion_allow", ("localhost", "localnets"), "who may have names outside our zones "
      f"forwarded to --upstream; others get REFUSED ({_LISTS})", DNS_SEC),
    # A forwarder pipelines many queries over one connection (RFC 7766), so 64 from one
    # address is plenty; 1024 in all keeps well under a 4096 descriptor limit beside HTTP.
    S("dns_tcp_max_connections", 1024, "open DNS connections over TCP and TLS in all",
      DNS_SEC),
    S("dns_tcp_max_per_client", 64, "open DNS connections over TCP and TLS per client address",
      DNS_SEC),
    S("dot", (), "DNS over TLS (RFC 7858) address host:port with --tls-cert/--tls-key", DNS_SEC,
      shown="off; port 853 when omitted"),
    # -- DNS UPDATE, zone transfers, NOTIFY (docs/dns.md): all off until a key or a list
    S("tsig_keys", (), "a TSIG key (RFC 8945) for DNS UPDATE and zone transfers, e.g. "
      "web-key:hmac-sha256:<base64> (JARVIS_DNS_TSIG_KEY keeps it out of ps)", DNS_OPS,
      flag="--tsig-key", shown="none", secret=True, metavar="NAME:ALGORITHM:BASE64SECRET"),
    S("update_allow", (), "DNS UPDATE (RFC 2136) signed with KEYNAME may register and "
      "deregister instances of services matching the pattern ('web', 'web-*', '*')", DNS_OPS,
      shown="none: every UPDATE is refused", metavar="KEYNAME:SERVICE_PATTERN"),
    S("transfer_allow", (), "who may AXFR/IXFR the zones over TCP: sources (CIDRs or "
      "addresses, and any, none, localhost, localnets), or requests signed with that key",
      DNS_OPS, shown="none: transfers refused", metavar="ADDRESSES|key:KEYNAME"),
    S("notify", (), "send NOTIFY (RFC 1996) to this secondary after changes, at most one a "
      "second, retried until acknowledged", DNS_OPS, shown="none", metavar="HOST:PORT"),
)  # fmt: skip
BY_NAME = {s.name: s for s in SETTINGS}


def _default(name: str) -> Any:
    """Config's default for a setting, from the table."""
    return BY_NAME[name].default


def _fresh(name: str) -> Callable[[], list[str]]:
    """Config's default for a list setting: a fresh list of the table's items."""
    items = BY_NAME[name].default
    assert isinstance(items, tuple)
    return lambda: list(items)


@dataclass(slots=True)
class Config:
    """Every setting, its default from SETTINGS (a test keeps the two equal)."""

    http: str = _default("http")
    dns: list[str] = field(default_factory=_fresh("dns"))
    domain: str = _default("domain")
    zones_dir: str = _default("zones_dir")
    log_level: str = _default("log_level")
    log_format: str = _default("log_format")
    store: str = _default("store")
    data_dir: str = _default("data_dir")
    event_log_size: int = _default("event_log_size")
    liveness_flush_s: float = _default("liveness_flush_s")
    node: str = _default("node")
    node_ttl_s: float = _default("node_ttl_s")
    dns_ttl: int = _default("dns_ttl")
    dns_negative_ttl: int = _default("dns_negative_ttl")
    max_udp_size: int = _default("max_udp_size")
    udp_answer_limit: int = _default("udp_answer_limit")
    upstreams: list[str] = field(default_factory=_fresh("upstreams"))
    upstream_timeout_s: float = _default("upstream_timeout_s")
    dns_fast_path: bool = _default("dns_fast_path")
    dns_cache: bool = _default("dns_cache")
    check_interval_s: float = _default("check_interval_s")
    check_timeout_s: float = _default("check_timeout_s")
    active_checks: bool = _default("active_checks")
    checks_in_flight: int = _default("checks_in_flight")
    deregister_after_s: float = _default("deregister_after_s")
    self_preservation_threshold: float = _default("self_preservation_threshold")
    acl: bool = _default("acl")
    acl_anonymous: str = _default("acl_anonymous")
    acl_bootstrap_token: str = _default("acl_bootstrap_token")
    acl_refresh_s: float = _default("acl_refresh_s")
    insecure: bool = _default("insecure")
    check_deny: list[str] = field(default_factory=_fresh("check_deny"))
    tls_cert: str = _default("tls_cert")
    tls_key: str = _default("tls_key")
    tls_client_ca: str = _default("tls_client_ca")
    http_fast_lane: bool = _default("http_fast_lane")
    http_max_connections: int = _default("http_max_connections")
    http_max_connections_per_client: int = _default("http_max_connections_per_client")
    http_read_timeout_s: float = _default("http_read_timeout_s")
    http_idle_timeout_s: float = _default("http_idle_timeout_s")
    max_body_bytes: int = _default("max_body_bytes")
    max_waiting_queries: int = _default("max_waiting_queries")
    max_instances: int = _default("max_instances")
    max_instances_per_service: int = _default("max_instances_per_service")
    dns_allow: list[str] = field(default_factory=_fresh("dns_allow"))
    rrl_rps: int = _default("rrl_rps")
    rrl_slip: int = _default("rrl_slip")
    rrl_exempt: list[str] = field(default_factory=_fresh("rrl_exempt"))
    recursion_allow: list[str] = field(default_factory=_fresh("recursion_allow"))
    dns_tcp_max_connections: int = _default("dns_tcp_max_connections")
    dns_tcp_max_per_client: int = _default("dns_tcp_max_per_client")
    dot: list[str] = field(default_factory=_fresh("dot"))
    tsig_keys: list[str] = field(default_factory=_fresh("tsig_keys"))
    update_allow: list[str] = field(default_factory=_fresh("update_allow"))
    transfer_allow: list[str] = field(default_factory=_fresh("transfer_allow"))
    notify: list[str] = field(default_factory=_fresh("notify"))

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


# -- where each setting came from ---------------------------------------------------

FLAG, DEFAULT = "flag", "default"


def resolve(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, str]]:
    """Config from the flags given (Config field -> value; None or absent: not given),
    else the environment, else the defaults; and where each setting came from ("flag",
    the environment variable's name, or "default"). ConfigError for a bad variable."""
    environ = os.environ if environ is None else environ
    config, sources = Config(), {}
    for s in SETTINGS:
        value, source = flags.get(s.name), FLAG
        if value is None and s.env in environ:
            try:
                value, source = s.value(environ[s.env]), f"env {s.env}"
            except ValueError:
                raise ConfigError(f"{s.env}={environ[s.env]!r} is not valid") from None
        if value is None:
            source = DEFAULT
        else:
            setattr(config, s.name, value)
        sources[s.name] = source
    return config, sources


def described(config: Config, sources: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(flag, effective value, where it came from) of every setting; a bool as its
    flag's state (on: turned away from the default), a secret as ***."""
    rows = []
    for s in SETTINGS:
        value = getattr(config, s.name)
        if isinstance(value, bool):
            shown = "on" if value != s.default else "off"
        elif isinstance(value, list):
            shown = ("***" if s.secret and value else ",".join(value)) or '""'
        else:
            shown = "***" if s.secret and value else (str(value) if value != "" else '""')
        rows.append((s.option, shown, sources.get(s.name, DEFAULT)))
    return rows


def markdown_table() -> str:
    """docs/operations.md's configuration table (a test keeps the two equal)."""
    rows = ["| flag | env | default | what |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        flag = f"`{s.option}`" + (" (repeatable)" if s.kind is list else "")
        env = f"`{s.env}=1`" if s.kind is bool else f"`{s.env}`"
        rows.append(f"| {flag} | {env} | `{s.default_text()}` | {s.help} |")
    return "\n".join(rows)


def check_fields() -> None:
    """Config has exactly the table's settings, each of its type (for the tests)."""
    declared = {f.name: f.type for f in fields(Config)}
    expected = {s.name: _type_name(s) for s in SETTINGS}
    if declared != expected:
        raise AssertionError(f"Config and SETTINGS differ: {declared} != {expected}")


def _type_name(s: Setting) -> str:
    return "list[str]" if s.kind is list else s.kind.__name__


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
