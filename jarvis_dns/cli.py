"""The `jarvis-dns` command: serve, and small clients for the HTTP and DNS faces."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from jarvis_dns import logs
from jarvis_dns.config import Config, env
from jarvis_dns.errors import ConfigError, StoreError, ZoneError

DEFAULT_URL = "http://127.0.0.1:9000"

# flag dest -> (Config field, parser of the env/flag string); lists are comma-separated in env.
_SERVE_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "http": ("http", str),
    "dns": ("dns", str),
    "domain": ("domain", str),
    "store": ("store", str),
    "data_dir": ("data_dir", str),
    "zones_dir": ("zones_dir", str),
    "log_level": ("log_level", str),
    "log_format": ("log_format", str),
    "dns_ttl": ("dns_ttl", int),
    "dns_negative_ttl": ("dns_negative_ttl", int),
    "max_udp_size": ("max_udp_size", int),
    "udp_answer_limit": ("udp_answer_limit", int),
    "upstream": ("upstreams", str),
    "upstream_timeout": ("upstream_timeout_s", float),
    "check_interval": ("check_interval_s", float),
    "check_timeout": ("check_timeout_s", float),
    "checks_in_flight": ("checks_in_flight", int),
    "deregister_after": ("deregister_after_s", float),
    "self_preservation_threshold": ("self_preservation_threshold", float),
    "event_log_size": ("event_log_size", int),
    "liveness_flush": ("liveness_flush_s", float),
    "node": ("node", str),
    "node_ttl": ("node_ttl_s", float),
    "acl_anonymous": ("acl_anonymous", str),
    "acl_bootstrap_token": ("acl_bootstrap_token", str),
    "check_deny": ("check_deny", str),
    "tls_cert": ("tls_cert", str),
    "tls_key": ("tls_key", str),
    "tls_client_ca": ("tls_client_ca", str),
    "http_max_connections": ("http_max_connections", int),
    "http_max_connections_per_client": ("http_max_connections_per_client", int),
    "http_read_timeout": ("http_read_timeout_s", float),
    "http_idle_timeout": ("http_idle_timeout_s", float),
    "max_waiting_queries": ("max_waiting_queries", int),
    "max_instances": ("max_instances", int),
    "max_instances_per_service": ("max_instances_per_service", int),
    "dns_allow": ("dns_allow", str),
    "rrl_rps": ("rrl_rps", int),
    "rrl_slip": ("rrl_slip", int),
    "rrl_exempt": ("rrl_exempt", str),
    "recursion_allow": ("recursion_allow", str),
    "dns_tcp_max_connections": ("dns_tcp_max_connections", int),
    "dns_tcp_max_per_client": ("dns_tcp_max_per_client", int),
    "dot": ("dot", str),
    "tsig_key": ("tsig_keys", str),
    "update_allow": ("update_allow", str),
    "transfer_allow": ("transfer_allow", str),
    "notify": ("notify", str),
}
# Repeatable flags; their values (and env) may also hold several, comma-separated.
_LIST_FIELDS = {
    "dns",
    "upstreams",
    "check_deny",
    "dns_allow",
    "rrl_exempt",
    "recursion_allow",
    "dot",
    "tsig_keys",
    "update_allow",
    "transfer_allow",
    "notify",
}


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the registry: HTTP API, DNS server, health monitor",
        description="Run jarvis-dns. Every flag falls back to JARVIS_DNS_<FLAG> "
        "(upper case, '-' as '_', lists comma-separated), then to its default.",
    )
    d = Config()
    add = p.add_argument
    add("--http", help=f"HTTP API address host:port [{d.http}]")
    add(
        "--dns",
        action="append",
        help=f"DNS address host:port, UDP and TCP; repeatable [{d.dns[0]}]",
    )
    add("--domain", help=f"registry zone [{d.domain}]")
    add(
        "--store",
        help="memory://, sqlite:///path, or etcd://h1:2379,h2:2379[?prefix=/jarvis-dns] for "
        "a cluster of nodes sharing one etcd [sqlite:///<data-dir>/registry.db]",
    )
    add("--node", help="this node's name in a cluster (etcd:// store) [host:http-port]")
    add(
        "--node-ttl",
        type=float,
        help=f"seconds a dead node keeps its share of the checks [{d.node_ttl_s:g}]",
    )
    add("--data-dir", help=f"where the SQLite store lives [{d.data_dir}]")
    add(
        "--zones-dir", help=f"directory of BIND *.zone files served authoritatively [{d.zones_dir}]"
    )
    add("--log-level", choices=logs.LEVELS, help=f"[{d.log_level}]")
    add("--log-format", choices=("text", "json"), help=f"[{d.log_format}]")
    add("--dns-ttl", type=int, help=f"TTL of DNS answers in seconds [{d.dns_ttl}]")
    add(
        "--dns-negative-ttl",
        type=int,
        help=f"negative-answer TTL (SOA minimum) [{d.dns_negative_ttl}]",
    )
    add("--max-udp-size", type=int, help=f"largest UDP answer with EDNS(0) [{d.max_udp_size}]")
    add(
        "--upstream",
        action="append",
        help="forward names outside every zone to IP[:port]; repeatable [refuse them]",
    )
    add("--upstream-timeout", type=float, help=f"seconds before SERVFAIL [{d.upstream_timeout_s}]")
    add(
        "--check-interval",
        type=float,
        help=f"default active-check interval, s [{d.check_interval_s}]",
    )
    add(
        "--check-timeout", type=float, help=f"default active-check timeout, s [{d.check_timeout_s}]"
    )
    add("--checks-in-flight", type=int, help=f"bound on concurrent checks [{d.checks_in_flight}]")
    add("--no-active-checks", action="store_true", help="only TTL heartbeats decide liveness")
    add(
        "--deregister-after",
        type=float,
        help=f"remove instances dead this long, s [{d.deregister_after_s:g}]",
    )
    add(
        "--self-preservation-threshold",
        type=float,
        help="hold TTL expiry when more than this share of live instances would expire "
        f"within one TTL; 0 disables [{d.self_preservation_threshold}]",
    )
    add("--event-log-size", type=int, help=f"events kept [{d.event_log_size}]")
    add(
        "--liveness-flush",
        type=float,
        help="seconds between writes of heartbeat times and metrics: at most this much "
        f"liveness is lost in a crash [{d.liveness_flush_s:g}]",
    )
    add("--no-fast-path", action="store_true", help="answer every DNS query through dnslib")
    add(
        "--udp-answer-limit",
        type=int,
        help="at most this many instances per UDP answer, idle first, shuffled, no TC "
        f"(for clients that never retry over TCP); 0: all [{d.udp_answer_limit}]",
    )
    add("--no-dns-cache", action="store_true", help="encode every DNS answer anew")
    _security_flags(p, d)
    _dns_security_flags(p, d)
    _dns_native_flags(p)
    p.set_defaults(run=_run_serve)


def _security_flags(p: argparse.ArgumentParser, d: Config) -> None:
    add = p.add_argument
    add("--acl", action="store_true", help="require ACL tokens on the HTTP API")
    add(
        "--acl-anonymous",
        choices=("none", "read"),
        help=f"policy without a token [{d.acl_anonymous}]",
    )
    add(
        "--acl-bootstrap-token",
        help="the management token [made once into <data-dir>/acl-bootstrap-token]",
    )
    add("--insecure", action="store_true", help="allow an HTTP bind beyond loopback without --acl")
    add(
        "--check-deny",
        action="append",
        help=f"CIDR active checks may not reach; repeatable [{','.join(d.check_deny)}]",
    )
    add("--tls-cert", help="PEM certificate chain: serve HTTPS (and DNS over TLS, --dot)")
    add("--tls-key", help="PEM private key of --tls-cert")
    add("--tls-client-ca", help="PEM CA bundle: require client certificates it signed")
    add(
        "--http-max-connections",
        type=int,
        help=f"open HTTP connections in all [{d.http_max_connections}]",
    )
    add(
        "--http-max-connections-per-client",
        type=int,
        help=f"open HTTP connections per client address [{d.http_max_connections_per_client}]",
    )
    add(
        "--http-read-timeout",
        type=float,
        help=f"seconds to receive a request's headers and body [{d.http_read_timeout_s:g}]",
    )
    add(
        "--http-idle-timeout",
        type=float,
        help=f"seconds a keep-alive connection may idle [{d.http_idle_timeout_s:g}]",
    )
    add(
        "--max-waiting-queries",
        type=int,
        help=f"blocking queries held at once; 503 beyond [{d.max_waiting_queries}]",
    )
    add("--max-instances", type=int, help=f"instances in all; 507 beyond [{d.max_instances}]")
    add(
        "--max-instances-per-service",
        type=int,
        help=f"instances per service; 507 beyond [{d.max_instances_per_service}]",
    )


def _dns_security_flags(p: argparse.ArgumentParser, d: Config) -> None:
    add = p.add_argument
    lists = "CIDRs or addresses, and any, none, localhost, localnets; comma-separated or repeated"
    add(
        "--dns-allow",
        action="append",
        help=f"who gets DNS answers; others get REFUSED ({lists}) [{','.join(d.dns_allow)}]",
    )
    add(
        "--rrl-rps",
        type=int,
        help="response-rate limiting: identical UDP answers a second to one /24 or /56 "
        f"before answers are slipped or dropped; 0: off [{d.rrl_rps}]",
    )
    add(
        "--rrl-slip",
        type=int,
        help="send every Nth limited answer empty with TC=1 (the client retries over TCP), "
        f"drop the others; 0: drop all [{d.rrl_slip}]",
    )
    add(
        "--rrl-exempt",
        action="append",
        help=f"clients never rate-limited ({lists}) [{','.join(d.rrl_exempt)}]",
    )
    add(
        "--recursion-allow",
        action="append",
        help="who may have names outside our zones forwarded to --upstream; others get "
        f"REFUSED ({lists}) [{','.join(d.recursion_allow)}]",
    )
    add(
        "--dns-tcp-max-connections",
        type=int,
        help=f"open DNS connections over TCP and TLS in all [{d.dns_tcp_max_connections}]",
    )
    add(
        "--dns-tcp-max-per-client",
        type=int,
        help="open DNS connections over TCP and TLS per client address "
        f"[{d.dns_tcp_max_per_client}]",
    )
    add(
        "--dot",
        action="append",
        help="DNS over TLS (RFC 7858) address host:port with --tls-cert/--tls-key; "
        "repeatable [off; port 853 when omitted]",
    )


def _dns_native_flags(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add(
        "--tsig-key",
        action="append",
        metavar="NAME:ALGORITHM:BASE64SECRET",
        help="a TSIG key (RFC 8945) for DNS UPDATE and zone transfers, e.g. "
        "web-key:hmac-sha256:<base64> (JARVIS_DNS_TSIG_KEY keeps it out of ps); "
        "repeatable [none]",
    )
    add(
        "--update-allow",
        action="append",
        metavar="KEYNAME:SERVICE_PATTERN",
        help="DNS UPDATE (RFC 2136) signed with KEYNAME may register and deregister "
        "instances of services matching the pattern ('web', 'web-*', '*'); repeatable "
        "[none: every UPDATE is refused]",
    )
    add(
        "--transfer-allow",
        action="append",
        metavar="ADDRESSES|key:KEYNAME",
        help="who may AXFR/IXFR the zones over TCP: sources (CIDRs or addresses, and "
        "any, none, localhost, localnets), or requests signed with that key; "
        "comma-separated or repeated [none: transfers refused]",
    )
    add(
        "--notify",
        action="append",
        metavar="HOST:PORT",
        help="send NOTIFY (RFC 1996) to this secondary after changes, at most one a second, "
        "retried until acknowledged; repeatable [none]",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    config = Config()
    for dest, (name, parse) in _SERVE_SETTINGS.items():
        value = getattr(args, dest, None)
        raw = env(dest)
        if value is not None and name in _LIST_FIELDS:
            value = [v.strip() for item in value for v in item.split(",") if v.strip()]
        if value is None and raw is not None:
            try:
                value = (
                    [parse(v) for v in raw.split(",") if v] if name in _LIST_FIELDS else parse(raw)
                )
            except ValueError:
                raise ConfigError(f"JARVIS_DNS_{dest.upper()}={raw!r} is not valid") from None
        if value is not None:
            setattr(config, name, value)
    config.active_checks = not (args.no_active_checks or _env_flag("no_active_checks"))
    config.dns_fast_path = not (args.no_fast_path or _env_flag("no_fast_path"))
    config.dns_cache = not (args.no_dns_cache or _env_flag("no_dns_cache"))
    config.acl = args.acl or _env_flag("acl")
    config.insecure = args.insecure or _env_flag("insecure")
    return config


def _env_flag(name: str) -> bool:
    return (env(name) or "").lower() in ("1", "true", "yes")


def _run_serve(args: argparse.Namespace) -> int:
    from jarvis_dns.app import serve

    config = config_from_args(args)
    logs.setup(config.log_level, config.log_format)
    try:
        _run(serve(config))
    except (ConfigError, ZoneError, StoreError) as exc:  # StoreError: the store is unreachable
        print(f"jarvis-dns: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # no uvloop on this platform: the default loop works, slower
        asyncio.run(main)
        return
    uvloop.run(main)


# -- client commands ------------------------------------------------------------


def _client_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        default=os.environ.get("JARVIS_DNS_URL") or os.environ.get("DNS_SERVER_URL") or DEFAULT_URL,
        help="registry HTTP URL (JARVIS_DNS_URL, then DNS_SERVER_URL) [%(default)s]",
    )
    parent.add_argument(
        "--token",
        default=os.environ.get("JARVIS_DNS_TOKEN"),
        help="ACL token, sent as Authorization: Bearer (JARVIS_DNS_TOKEN)",
    )
    parent.add_argument("--cacert", help="PEM CA bundle to verify an https:// registry")
    return parent


def _request(args: argparse.Namespace, method: str, path: str, **kw: Any) -> Any:
    import httpx

    url = args.url.split(",")[0].rstrip("/") + path
    if args.token:
        kw["headers"] = {"Authorization": f"Bearer {args.token}"}
    verify = args.cacert or True
    try:
        response = httpx.request(method, url, timeout=kw.pop("timeout", 10.0), verify=verify, **kw)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {url}: {exc}") from None
    try:
        body = response.json() if response.content else {}
    except ValueError:  # not JSON: a proxy's error page, say
        raise CommandError(f"{response.status_code}: {response.text[:200]}") from None
    if response.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        field = f" ({err['field']})" if err.get("field") else ""
        raise CommandError(f"{response.status_code}: {err.get('message', response.text)}{field}")
    return body


class CommandError(Exception):
    """A client command failed; the message is printed as one line."""


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=True))


def _metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise CommandError("--metadata must be a JSON object") from None
    if not isinstance(value, dict):
        raise CommandError("--metadata must be a JSON object")
    return value


def _cmd_register(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "service_type": args.service_type,
        "instance_id": args.instance_id,
        "port": args.port,
        "metadata": _metadata(args.metadata),
    }
    for name in ("host", "ttl_s", "weight"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    _print(_request(args, "POST", "/v1/instances", json=body))
    return 0


def _cmd_deregister(args: argparse.Namespace) -> int:
    path = f"/v1/services/{args.service_type}/instances/{args.instance_id}"
    _print(_request(args, "DELETE", path))
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    if args.service_type is None:
        services = _request(args, "GET", "/v1/services")["services"]
        for svc, counts in services.items():
            print(
                f"{svc:30} active={counts['active']} busy={counts['busy']} "
                f"dead={counts['dead']} maintenance={counts['maintenance']}"
            )
        return 0
    body = _request(args, "GET", f"/v1/services/{args.service_type}")
    for inst in body["instances"]:
        print(
            f"{inst['instance_id']!s:12} {inst['host']}:{inst['port']:<6} {inst['status']:12} "
            f"{'busy' if inst['busy'] else 'idle':5} {json.dumps(inst['metadata'])}"
        )
    return 0


def _cmd_discover(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"service_type": args.service_type, "strategy": args.strategy}
    if args.requirements:
        body["requirements"] = _metadata(args.requirements)
    if args.key:
        body["key"] = args.key
    _print(_request(args, "POST", "/v1/discover", json=body))
    return 0


def _follow(args: argparse.Namespace, path: str, show: Callable[[Any], int]) -> int:
    """Print once, then (with --follow) keep long-polling on the change index."""
    index = show(_request(args, "GET", path))
    while args.follow:
        sep = "&" if "?" in path else "?"
        index = (
            show(_request(args, "GET", f"{path}{sep}index={index}&wait=60s", timeout=90.0)) or index
        )
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    args.follow = True
    seen: dict[str, Any] = {}

    def show(body: Any) -> int:
        current = {str(i["instance_id"]): i for i in body["instances"]}
        for key, inst in current.items():
            if seen.get(key) != inst:
                print(
                    f"{body['index']:>8} {args.service_type}/{key} {inst['status']} "
                    f"{'busy' if inst['busy'] else 'idle'} {inst['host']}:{inst['port']}",
                    flush=True,
                )
        for key in seen.keys() - current.keys():
            print(f"{body['index']:>8} {args.service_type}/{key} removed", flush=True)
        seen.clear()
        seen.update(current)
        return int(body["index"])

    return _follow(args, f"/v1/services/{args.service_type}", show)


def _cmd_events(args: argparse.Namespace) -> int:
    since = args.since

    def show(body: Any) -> int:
        nonlocal since
        for e in body["events"]:
            if e["index"] <= since:
                continue
            since = e["index"]
            print(
                f"{e['index']:>8} {e['service_type']}/{e['instance_id']} {e['kind']}: "
                f"{e['old_status']} -> {e['new_status']} ({e['reason']})",
                flush=True,
            )
        return int(body["index"])

    index = show(_request(args, "GET", f"/v1/events?since={since}"))
    while args.follow:
        if index < since:  # the server came back with a fresh store: start over
            since = 0
        body = _request(
            args, "GET", f"/v1/events?since={since}&index={index}&wait=60s", timeout=90.0
        )
        index = show(body)
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_request(args, "GET", "/v1/acl/tokens"))
        return 0
    if args.action == "delete":
        _print(_request(args, "DELETE", f"/v1/acl/tokens/{args.accessor}"))
        return 0
    from jarvis_dns.acl import parse_rule

    services: dict[str, str] = {}
    for rule in args.service or []:
        try:
            pattern, level = parse_rule(rule)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        services[pattern] = level
    policy: dict[str, Any] = {"services": services}
    if args.management:
        policy["management"] = True
    body = {"description": args.description, "policy": policy}
    _print(_request(args, "POST", "/v1/acl/tokens", json=body))
    return 0


def _token_parser(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("token", help="manage ACL tokens (needs a management --token)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[parent], help="create a token, print it once")
    create.add_argument(
        "--service",
        action="append",
        help="SERVICE:read or SERVICE:write ('*' patterns); repeatable",
    )
    create.add_argument("--management", action="store_true", help="may manage everything")
    create.add_argument("--description", default="", help="what the token is for")
    actions.add_parser("list", parents=[parent], help="list tokens (never their secrets)")
    delete = actions.add_parser("delete", parents=[parent], help="revoke a token")
    delete.add_argument("accessor")
    p.set_defaults(run=_cmd_token)


def _cmd_lookup(args: argparse.Namespace) -> int:
    from jarvis_dns.dns.lookup import lookup_main

    return lookup_main(args.rest)


def _client_parsers(sub: Any) -> None:
    parent = _client_parent()
    p = sub.add_parser("register", parents=[parent], help="register or update an instance")
    p.add_argument("service_type")
    p.add_argument("instance_id")
    p.add_argument("port", type=int)
    p.add_argument("--host", help="advertised address [the address the server sees]")
    p.add_argument("--metadata", help="JSON object")
    p.add_argument("--ttl-s", dest="ttl_s", type=float, help="heartbeat TTL in seconds [30]")
    p.add_argument("--weight", type=int, help="SRV weight 1-65535 [100]")
    p.set_defaults(run=_cmd_register)
    p = sub.add_parser("deregister", parents=[parent], help="remove an instance now")
    p.add_argument("service_type")
    p.add_argument("instance_id")
    p.set_defaults(run=_cmd_deregister)
    p = sub.add_parser("ls", parents=[parent], help="list service types, or one type's instances")
    p.add_argument("service_type", nargs="?")
    p.set_defaults(run=_cmd_ls)
    p = sub.add_parser("discover", parents=[parent], help="pick one live instance")
    p.add_argument("service_type")
    p.add_argument("--requirements", help="JSON object, e.g. '{\"busy\": false}'")
    p.add_argument(
        "--strategy",
        default="round_robin",
        choices=("round_robin", "random", "weighted", "least_loaded", "consistent_hash"),
    )
    p.add_argument("--key", help="key for consistent_hash")
    p.set_defaults(run=_cmd_discover)
    p = sub.add_parser(
        "watch", parents=[parent], help="print a service type's changes as they happen"
    )
    p.add_argument("service_type")
    p.set_defaults(run=_cmd_watch)
    p = sub.add_parser("events", parents=[parent], help="print the event log")
    p.add_argument("--since", type=int, default=0, help="only events after this index")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.set_defaults(run=_cmd_events)
    _token_parser(sub, parent)
    p = sub.add_parser(
        "lookup",
        help="query the DNS face, like a small dig",
        description="jarvis-dns lookup NAME [TYPE] [--server HOST:PORT]",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="NAME [TYPE] [--server 127.0.0.1:9053]")
    p.set_defaults(run=_cmd_lookup)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jarvis-dns",
        description="A service registry that is a real DNS server.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    _client_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (CommandError, ConfigError) as exc:
        print(f"jarvis-dns: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
