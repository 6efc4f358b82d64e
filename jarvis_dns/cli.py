"""The `jarvis-dns` command: serve, and small clients for the HTTP and DNS faces."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from jarvis_dns import cli_tables, logs
from jarvis_dns.config import SETTINGS, Config, Setting, described, resolve
from jarvis_dns.errors import ConfigError, StoreError, ZoneError

DEFAULT_URL = "http://127.0.0.1:9000"


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the registry: HTTP API, DNS server, health monitor",
        description="Run jarvis-dns. Every flag falls back to JARVIS_DNS_<FLAG> "
        "(upper case, '-' as '_', lists comma-separated), then to its default.",
    )
    groups: dict[str, Any] = {}
    for s in SETTINGS:
        group = groups.get(s.group) or groups.setdefault(s.group, p.add_argument_group(s.group))
        _add_flag(group, s)
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting's effective value and where it came from "
        "(flag, environment, default), then exit",
    )
    p.set_defaults(run=_run_serve)


def _add_flag(group: Any, s: Setting) -> None:
    help_text = f"{s.help} [{s.default_text()}]"
    if s.kind is bool:
        group.add_argument(s.option, dest=s.name, action="store_true", default=None, help=help_text)
        return
    metavar = None if s.choices else s.metavar or s.option[2:].upper().replace("-", "_")
    if s.kind is list:
        help_text += "; repeatable"
        group.add_argument(s.option, dest=s.name, action="append", metavar=metavar, help=help_text)
        return
    choices = s.choices or None
    group.add_argument(
        s.option, dest=s.name, type=s.kind, choices=choices, metavar=metavar, help=help_text
    )


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, str]]:
    """The settings (flags, then JARVIS_DNS_* variables, then defaults) and their sources."""
    flags: dict[str, Any] = {}
    for s in SETTINGS:
        value = getattr(args, s.name, None)
        if value is not None and s.kind is bool:
            value = not s.default  # the flag turns it away from its default
        elif value is not None and s.kind is list:  # repeated, or comma-separated
            value = [v.strip() for item in value for v in item.split(",") if v.strip()]
        flags[s.name] = value
    return resolve(flags, environ)


def print_config(config: Config, sources: Mapping[str, str]) -> None:
    rows = [("setting", "value", "from"), *described(config, sources)]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for flag, value, source in rows:
        print(f"{flag:{widths[0]}}  {value:{widths[1]}}  {source}")


def _run_serve(args: argparse.Namespace) -> int:
    from jarvis_dns.app import serve

    config, sources = config_from_args(args)
    if args.print_config:
        print_config(config, sources)
        return 0
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
        raise CommandError(_unreachable(args.url.split(",")[0], exc)) from None
    try:
        body = response.json() if response.content else {}
    except ValueError:  # not JSON: a proxy's error page, say
        raise CommandError(f"{response.status_code}: {response.text[:200]}") from None
    if response.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        field = f" ({err['field']})" if err.get("field") else ""
        raise CommandError(f"{response.status_code}: {err.get('message', response.text)}{field}")
    return body


def _unreachable(base: str, exc: Exception) -> str:
    """One line that says what failed and what to do."""
    import httpx

    if isinstance(exc, httpx.ConnectError):
        why = "connection refused or no route"
    elif isinstance(exc, httpx.TimeoutException):
        why = "no answer in time"
    else:
        why = str(exc) or type(exc).__name__
    return (
        f"cannot reach the registry at {base} ({why}). Is `jarvis-dns serve` running there? "
        "Point --url or JARVIS_DNS_URL at it."
    )


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
    """Every instance (of one service, or of all) as an aligned table, or as JSON."""
    if args.service_type is None:
        names = list(_request(args, "GET", "/v1/services")["services"])
    else:
        names = [args.service_type]
    instances = [
        inst for svc in names for inst in _request(args, "GET", f"/v1/services/{svc}")["instances"]
    ]
    if args.json:
        _print(instances)
        return 0
    if instances:
        print(cli_tables.table(cli_tables.LS_HEADERS, cli_tables.ls_rows(instances, time.time())))
    else:
        print("no instances" + (f" of {args.service_type}" if args.service_type else ""))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """The server's health, counts, index, self-preservation and DNS counters."""
    health = _request(args, "GET", "/v1/health")
    services = _request(args, "GET", "/v1/services")["services"]
    if args.json:
        _print({"health": health, "services": services})
    else:
        print(cli_tables.status_report(health, services))
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
    p = sub.add_parser(
        "ls", parents=[parent], help="list instances (all, or one service's) as a table"
    )
    p.add_argument("service_type", nargs="?")
    p.add_argument("--json", action="store_true", help="print the instances as JSON")
    p.set_defaults(run=_cmd_ls)
    p = sub.add_parser(
        "status",
        parents=[parent],
        help="the server's health: store, cluster, counts, index, self-preservation, DNS",
    )
    p.add_argument("--json", action="store_true", help="print /v1/health and the counts as JSON")
    p.set_defaults(run=_cmd_status)
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
    except BrokenPipeError:  # `jarvis-dns ls | head`: the reader had enough
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (flushed at exit, to nowhere)
        return 0
