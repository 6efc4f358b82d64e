"""What the client commands print: aligned tables and the status report (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LS_HEADERS = ("SERVICE", "ID", "ADDRESS", "STATUS", "BUSY", "AGE")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last not padded."""
    every = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in every) for i in range(len(headers) - 1)]
    lines = []
    for row in every:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def age(seconds: float) -> str:
    """3s, 4m, 2h, 5d: how long ago, at a glance."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def ls_rows(instances: Sequence[Mapping[str, Any]], now: float) -> list[list[str]]:
    """One row an instance: service, id, host:port, status, busy, heartbeat age."""
    rows = []
    for inst in instances:
        host = str(inst["host"])
        address = f"[{host}]:{inst['port']}" if ":" in host else f"{host}:{inst['port']}"
        rows.append(
            [
                str(inst["service_type"]),
                str(inst["instance_id"]),
                address,
                str(inst["status"]),
                "busy" if inst["busy"] else "idle",
                age(now - float(inst["last_heartbeat"])),
            ]
        )
    return rows


def status_report(health: Mapping[str, Any], services: Mapping[str, Any]) -> str:
    """GET /v1/health and /v1/services, as an operator reads them."""
    totals = {k: sum(c[k] for c in services.values()) for k in ("active", "busy", "dead")}
    totals["maintenance"] = sum(c["maintenance"] for c in services.values())
    store, cluster = health.get("store", {}), health.get("cluster", {})
    monitor, dns = health.get("monitor", {}), health.get("dns", {})
    rows = [
        ["status", f"{health['status']} (zone {health['domain']}, up {age(health['uptime_s'])})"],
        ["store", " ".join(f"{k}={v}" for k, v in store.items())],
        ["node", _cluster(cluster)],
        ["index", str(health["index"])],
        ["instances", f"{health['instances']} in {health['services']} services: "
         + ", ".join(f"{totals[k]} {k}" for k in ("active", "busy", "dead", "maintenance"))],
        ["self-preservation", _preservation(monitor.get("self_preservation", {}))],
        ["checks", _checks(monitor)],
        ["dns", ", ".join(f"{k} {dns[k]}" for k in _DNS_SHOWN if k in dns)],
    ]  # fmt: skip
    return table(("", ""), rows).split("\n", 1)[1]


_DNS_SHOWN = ("queries_udp", "queries_tcp", "cache_hits", "nxdomain", "refused", "servfail",
              "truncated", "dropped", "backlog_dropped", "tcp_open")  # fmt: skip


def _cluster(cluster: Mapping[str, Any]) -> str:
    members = cluster.get("members") or []
    if len(members) <= 1:
        return f"{cluster.get('node', '?')} (single node)"
    return f"{cluster['node']}, leader {cluster.get('leader')}, members {', '.join(members)}"


def _preservation(state: Mapping[str, Any]) -> str:
    if not state.get("active"):
        return f"off (threshold {state.get('threshold', 0):.0%})"
    return f"HOLDING {state.get('held', 0)} instances: {state.get('reason', '')}"


def _checks(monitor: Mapping[str, Any]) -> str:
    if not monitor.get("active_checks"):
        return "off (heartbeats only)"
    return (
        f"{monitor.get('checks_scheduled', 0)} scheduled, {monitor.get('checks_in_flight', 0)} "
        f"in flight, {monitor.get('checks_total', 0)} run, {monitor.get('checks_failed', 0)} failed"
    )
