"""Every metric jarvis-dns exports: its name, kind, help and labels, in one table (pure).

A part asks ``Metrics`` for a metric by name; a name missing here is a bug (KeyError),
so this table is the whole list, and docs/operations.md, contrib/ and the tests read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Seconds, 0.25 ms to 10 s: a DNS answer or a heartbeat takes well under a millisecond,
# a group commit a few, a check that waited for a free slot or a slow disk seconds.
SECONDS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM
CATALOGUE: tuple[Spec, ...] = (
    # -- DNS
    Spec(
        "jarvis_dns_queries_total",
        C,
        "DNS messages taken, by transport and the rcode answered (forwarded: handed to "
        "the upstreams; dropped: not a query, no answer; operation: UPDATE, a zone transfer "
        "or TSIG-signed)",
        ("transport", "rcode"),
    ),
    Spec(
        "jarvis_dns_cache_hits_total",
        C,
        "DNS queries answered from the answer cache",
        ("transport",),
    ),
    Spec(
        "jarvis_dns_answers_total",
        C,
        "DNS answers for the names of one service, from the answer cache (not counted "
        "with --no-dns-cache)",
        ("service",),
    ),
    Spec("jarvis_dns_nodata_total", C, "NOERROR answers with an empty answer section"),
    Spec("jarvis_dns_truncated_total", C, "UDP answers sent with TC=1"),
    Spec(
        "jarvis_dns_forward_replies_total",
        C,
        "forwarded queries by what came back (answered, failed: SERVFAIL sent, truncated)",
        ("result",),
    ),
    Spec(
        "jarvis_dns_dropped_total",
        C,
        "DNS work shed under load: backlog (UDP queries never taken), send_buffer (an "
        "answer the socket could not take), forwards (too many upstream queries or DNS "
        "operations out)",
        ("reason",),
    ),
    Spec("jarvis_dns_tcp_connections_total", C, "DNS TCP connections accepted (TLS too)"),
    Spec("jarvis_dns_tls_connections_total", C, "DNS over TLS connections accepted (--dot)"),
    Spec(
        "jarvis_dns_refusals_total",
        C,
        "REFUSED for the client's address: dns_allow (outside --dns-allow), recursion_allow "
        "(a name to forward, outside --recursion-allow)",
        ("reason",),
    ),
    Spec(
        "jarvis_dns_rrl_total",
        C,
        "UDP answers over --rrl-rps: slipped (sent empty with TC=1) or dropped",
        ("verdict",),
    ),
    Spec("jarvis_dns_rrl_accounts", G, "client networks response-rate limiting counts for"),
    Spec(
        "jarvis_dns_operations_total",
        C,
        'what became of UPDATE, zone-transfer and TSIG-signed messages (rcode="operation" '
        "in jarvis_dns_queries_total): updates, updates_refused, axfr, ixfr, ixfr_full, "
        "transfers_refused, tsig_errors, formerr, dropped",
        ("kind",),
    ),
    Spec("jarvis_dns_tcp_rejected_total", C, "DNS TCP connections refused over the limit"),
    Spec("jarvis_dns_errors_total", C, "DNS messages that met a bug (each is logged)"),
    Spec("jarvis_dns_tcp_open", G, "DNS TCP connections open"),
    Spec("jarvis_dns_udp_backlog", G, "UDP queries waiting for the dnslib path"),
    # -- HTTP
    Spec(
        "jarvis_http_requests_total",
        C,
        "HTTP requests answered, by route and status code",
        ("route", "code"),
    ),
    Spec(
        "jarvis_http_request_duration_seconds",
        H,
        "time from a request's arrival at its route to its answer",
        ("route",),
        SECONDS,
    ),
    Spec("jarvis_http_connections_open", G, "HTTP connections open"),
    Spec(
        "jarvis_http_connections_refused_total",
        C,
        "HTTP connections refused over --http-max-connections(-per-client)",
    ),
    Spec("jarvis_blocking_queries_waiting", G, "blocking queries (?index=&wait=) held now"),
    # -- the registry
    Spec("jarvis_instances", G, "instances by service and status", ("service", "status")),
    Spec("jarvis_instances_busy", G, "live instances that report busy, by service", ("service",)),
    Spec("jarvis_heartbeats_total", C, "heartbeats received, by service", ("service",)),
    Spec("jarvis_events_total", C, "registry events applied, by kind", ("kind",)),
    Spec("jarvis_change_index", G, "the registry's change index"),
    Spec("jarvis_store_commit_seconds", H, "time for the store to commit one batch", (), SECONDS),
    Spec("jarvis_store_up", G, "1 while the store is in reach (0: answering from the last view)"),
    # -- health
    Spec(
        "jarvis_checks_total",
        C,
        "active-check probes by result (passed, failed), and "
        "rounds skipped because the checker was a whole interval behind",
        ("result",),
    ),
    Spec("jarvis_checks_in_flight", G, "active-check probes running now"),
    Spec("jarvis_checks_scheduled", G, "instances with an active check on this node"),
    Spec(
        "jarvis_check_lag_seconds",
        H,
        "how late a probe started against its schedule (a free slot included)",
        (),
        SECONDS,
    ),
    Spec("jarvis_self_preservation_active", G, "1 while self-preservation holds TTL expiry"),
    Spec("jarvis_self_preservation_held", G, "instances self-preservation keeps from expiring"),
    # -- a cluster on etcd (only when clustered)
    Spec("jarvis_cluster_members", G, "live nodes of the cluster, this one included"),
    Spec("jarvis_cluster_leader", G, "1 on the elected leader node"),
    Spec(
        "jarvis_store_view_age_seconds",
        G,
        "how old this node's view is while etcd is out of reach (0 while in reach)",
    ),
)

SPECS = {spec.name: spec for spec in CATALOGUE}


def spec(name: str) -> Spec:
    return SPECS[name]


def markdown_table() -> str:
    """docs/operations.md's table of metrics (a test keeps the two equal)."""
    rows = ["| metric | type | labels | what |", "| --- | --- | --- | --- |"]
    for s in CATALOGUE:
        labels = ", ".join(f"`{label}`" for label in s.labels)
        rows.append(f"| `{s.name}` | {s.kind.value} | {labels} | {s.help} |")
    return "\n".join(rows)
