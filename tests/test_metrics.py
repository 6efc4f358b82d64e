"""The registry's own figures: the metric families (pure), GET /metrics after a short
workload against a real server (parsed by prometheus_client's parser; every series the
issue names; the same numbers as /v1/health), who may read it under ACLs, and the DNS
drops counted once each."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.message
import httpx
import pytest
from conftest import app_config, eventually, running_app
from prometheus_client.parser import text_string_to_metric_families

from jarvis_dns.metrics import Metrics
from jarvis_dns.metrics.catalogue import CATALOGUE
from jarvis_dns.metrics.dns import DnsCounts, outcome
from jarvis_dns.metrics.exposition import render

ZONE = "jarvis.internal."
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# Shown only when clustered (tests/test_cluster.py checks them on etcd).
CLUSTER_ONLY = {"jarvis_cluster_members", "jarvis_cluster_leader", "jarvis_store_view_age_seconds"}


def parse(text: str) -> Series:
    """Every sample as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, tuple(sorted(labels.items())))]


def names(series: Series) -> set[str]:
    return {name for name, _ in series}


# -- the families, pure ----------------------------------------------------------------


def test_a_name_outside_the_catalogue_or_of_another_kind_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(KeyError):
        metrics.counter("jarvis_made_up_total")
    with pytest.raises(ValueError, match="histogram"):
        metrics.counter("jarvis_store_commit_seconds")
    assert metrics.counter("jarvis_events_total") is metrics.counter("jarvis_events_total")


def test_histograms_render_cumulative_buckets_and_keep_recent_values_for_quantiles() -> None:
    metrics = Metrics()
    lag = metrics.histogram("jarvis_check_lag_seconds", recent=3)
    for seconds in (0.0001, 0.003, 0.003, 20.0):
        lag.observe(seconds)
    series = parse(render(metrics).decode())
    assert value(series, "jarvis_check_lag_seconds_bucket", le="0.00025") == 1
    assert value(series, "jarvis_check_lag_seconds_bucket", le="0.005") == 3
    assert value(series, "jarvis_check_lag_seconds_bucket", le="10.0") == 3
    assert value(series, "jarvis_check_lag_seconds_bucket", le="+Inf") == 4
    assert value(series, "jarvis_check_lag_seconds_count") == 4
    assert value(series, "jarvis_check_lag_seconds_sum") == pytest.approx(20.0061)
    # The first observation fell out of the three kept.
    assert (lag.quantile(0.0), lag.quantile(0.5), lag.quantile(1.0)) == (0.003, 0.003, 20.0)


def test_dns_counts_name_each_outcome_once() -> None:
    metrics = Metrics()
    counts = DnsCounts(metrics)
    counts.count(True, outcome(0, True, False))  # an answer over UDP
    counts.count(True, outcome(0, False, False))  # NODATA
    counts.count(False, outcome(3, False, True))  # NXDOMAIN, truncated, over TCP
    counts.hits[True][outcome(0, True, False)] += 5
    snap = counts.snapshot()
    assert (snap["queries_udp"], snap["queries_tcp"], snap["cache_hits"]) == (7, 1, 5)
    assert (snap["nodata"], snap["nxdomain"], snap["truncated"]) == (1, 1, 1)
    series = parse(render(metrics).decode())
    assert value(series, "jarvis_dns_queries_total", transport="udp", rcode="NOERROR") == 7
    assert value(series, "jarvis_dns_queries_total", transport="tcp", rcode="NXDOMAIN") == 1
    assert value(series, "jarvis_dns_cache_hits_total", transport="udp") == 5


# -- a real server -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tcp_listener() -> AsyncIterator[int]:
    """A port that accepts connections: what a tcp check passes on."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def ask(address: tuple[str, int], name: str, tcp: bool = False) -> str:
    query = dns.message.make_query(name, "A")
    host, port = address
    if tcp:
        reply = await dns.asyncquery.tcp(query, host, port=port, timeout=2)
    else:
        reply = await dns.asyncquery.udp(query, host, port=port, timeout=2)
    return dns.rcode.to_text(reply.rcode())


async def workload(c: httpx.AsyncClient, dns_at: tuple[str, int], check_port: int) -> None:
    check = {"type": "tcp", "interval_s": 1}
    for iid in (1, 2):
        body = {"service_type": "api", "instance_id": iid, "host": "127.0.0.1", "port": 80}
        assert (await c.post("/v1/instances", json=body)).status_code == 201
    body = {"service_type": "web", "instance_id": 1, "host": "127.0.0.1", "port": check_port}
    assert (await c.post("/v1/instances", json={**body, "check": check})).status_code == 201
    assert (await c.put("/v1/services/api/instances/1/heartbeat")).status_code == 200
    flip = await c.put("/v1/services/api/instances/2/status", json={"busy": True})
    assert flip.status_code == 200
    assert (await c.post("/v1/discover", json={"service_type": "api"})).status_code == 200
    assert (await c.get("/v1/services/nope/instances/1")).status_code == 404
    assert await ask(dns_at, f"api.{ZONE}") == "NOERROR"
    assert await ask(dns_at, f"api.{ZONE}") == "NOERROR"  # from the answer cache
    assert await ask(dns_at, f"nope.{ZONE}", tcp=True) == "NXDOMAIN"
    assert (await c.delete("/v1/services/api/instances/1")).status_code == 200


async def test_metrics_after_a_short_workload_have_every_series_and_agree_with_health(
    tmp_path: Path,
) -> None:
    config = app_config(tmp_path, store="")  # SQLite: commits take measurable time
    async with (
        tcp_listener() as check_port,
        running_app(config) as app,
        httpx.AsyncClient(base_url=app.http_url) as c,
    ):
        await workload(c, app.dns_addresses[0], check_port)

        async def checked() -> bool:
            text = (await c.get("/metrics")).text
            return value(parse(text), "jarvis_checks_total", result="passed") >= 1

        await eventually(checked, timeout=5)
        response = await c.get("/metrics")
        health = (await c.get("/v1/health")).json()
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    series = parse(response.text)
    shown = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
             for n in names(series)}  # fmt: skip
    expected = {spec.name for spec in CATALOGUE} - CLUSTER_ONLY
    assert expected <= shown, expected - shown
    assert not CLUSTER_ONLY & shown  # not clustered: no cluster figures
    # The series, with the labels it names.
    assert value(series, "jarvis_dns_queries_total", transport="udp", rcode="NOERROR") == 2
    assert value(series, "jarvis_dns_queries_total", transport="tcp", rcode="NXDOMAIN") == 1
    assert value(series, "jarvis_dns_cache_hits_total", transport="udp") == 1
    route = "POST /v1/instances"
    assert value(series, "jarvis_http_requests_total", route=route, code="201") == 3
    assert value(series, "jarvis_http_request_duration_seconds_count", route=route) == 3
    got = "GET /v1/services/{svc}/instances/{id}"
    assert value(series, "jarvis_http_requests_total", route=got, code="404") == 1
    assert value(series, "jarvis_instances", service="api", status="active") == 1
    assert value(series, "jarvis_instances_busy", service="api") == 1
    assert value(series, "jarvis_events_total", kind="registered") == 3
    assert value(series, "jarvis_heartbeats_total", service="api") == 1
    assert value(series, "jarvis_dns_answers_total", service="api") == 2
    assert value(series, "jarvis_events_total", kind="busy") == 1
    assert value(series, "jarvis_events_total", kind="deregistered") == 1
    assert value(series, "jarvis_check_lag_seconds_count") >= 1
    assert value(series, "jarvis_store_commit_seconds_count") >= 5
    assert value(series, "jarvis_self_preservation_active") == 0
    assert value(series, "jarvis_store_up") == 1
    # One source: /v1/health shows the same figures.
    assert value(series, "jarvis_change_index") == health["index"]
    dns_health = health["dns"]
    assert dns_health["queries_udp"] == 2 and dns_health["queries_tcp"] == 1
    assert dns_health["cache_hits"] == 1 and dns_health["nxdomain"] == 1


async def test_who_may_read_metrics_under_acl(tmp_path: Path) -> None:
    boot = {"Authorization": "Bearer boot"}
    config = app_config(tmp_path, store="", acl=True, acl_bootstrap_token="boot")
    async with running_app(config) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        for svc in ("api", "web"):
            body = {"service_type": svc, "instance_id": 1, "host": "10.0.0.1", "port": 80}
            assert (await c.post("/v1/instances", json=body, headers=boot)).status_code == 201
        r = await c.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"
        policy = {"services": {"api": "read"}}
        made = await c.post("/v1/acl/tokens", json={"policy": policy}, headers=boot)
        reader = {"Authorization": f"Bearer {made.json()['token']}"}
        series = parse((await c.get("/metrics", headers=reader)).text)
        assert value(series, "jarvis_instances", service="api", status="active") == 1
        assert not [labels for name, labels in series if ("service", "web") in labels]
        assert value(series, "jarvis_change_index") >= 2  # figures of no service: shown
        series = parse((await c.get("/metrics", headers=boot)).text)
        assert value(series, "jarvis_instances", service="web", status="active") == 1
    config = app_config(tmp_path, store="", acl=True, acl_anonymous="read")
    async with running_app(config) as app, httpx.AsyncClient(base_url=app.http_url) as c:
        assert (await c.get("/metrics")).status_code == 200


# -- DNS drops: each counted once, under its own cause --------------------------------


async def test_a_full_send_buffer_is_not_a_backlog_drop_nor_a_second_query(
    tmp_path: Path,
) -> None:
    from jarvis_dns.dns.server import MAX_UDP_WRITE_BUFFER

    async with running_app(app_config(tmp_path)) as app:
        protocol = app.dns._udp[0].get_protocol()
        # A socket buffer full of unsent replies cannot be made on loopback on demand.
        protocol._buffered = lambda: MAX_UDP_WRITE_BUFFER + 1
        query = dns.message.make_query(f"nope.{ZONE}", "A").to_wire()
        for _ in range(3):
            protocol.datagram_received(query, ("127.0.0.1", 9))
        stats = app.dns.stats()
    assert (stats["queries_udp"], stats["send_dropped"], stats["backlog_dropped"]) == (3, 3, 0)


async def test_forwards_over_the_limit_are_counted_apart(tmp_path: Path) -> None:
    from jarvis_dns.dns.server import MAX_FORWARDS_IN_FLIGHT

    # An upstream that never answers: every forward stays in flight.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        upstream = f"127.0.0.1:{silent.getsockname()[1]}"
        config = app_config(tmp_path, upstreams=[upstream], upstream_timeout_s=30.0)
        async with running_app(config) as app:
            protocol = app.dns._udp[0].get_protocol()
            for i in range(MAX_FORWARDS_IN_FLIGHT + 5):
                query = dns.message.make_query(f"host{i}.example.", "A").to_wire()
                protocol.datagram_received(query, ("127.0.0.1", 9))
            await eventually(lambda: app.dns.stats()["forwarded"] == MAX_FORWARDS_IN_FLIGHT + 5)
            stats = app.dns.stats()
    assert stats["forwards_dropped"] == 5 and stats["backlog_dropped"] == 0
    assert stats["queries_udp"] == MAX_FORWARDS_IN_FLIGHT + 5


def test_the_docs_list_every_metric() -> None:
    from jarvis_dns.metrics.catalogue import markdown_table

    readme = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    listed = readme.split("<!-- metrics:table -->\n")[1].split("\n<!-- /metrics:table -->")[0]
    assert listed == markdown_table()


def test_contrib_scrape_config_and_dashboard_name_only_metrics_that_exist() -> None:
    import json
    import re

    import yaml

    from jarvis_dns.metrics.catalogue import SPECS, Kind

    contrib = Path(__file__).parent.parent / "contrib"
    scrape = yaml.safe_load((contrib / "prometheus.yml").read_text())
    job = scrape["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    assert scrape["rule_files"] == ["jarvis-dns-alerts.yml"]
    rules = yaml.safe_load((contrib / "jarvis-dns-alerts.yml").read_text())
    dashboard = json.loads((contrib / "grafana-dashboard.json").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {name for expr in exprs for name in re.findall(r"\bjarvis_\w+", expr)}
    exported = set(SPECS) | {
        f"{s.name}_{part}"
        for s in SPECS.values()
        if s.kind is Kind.HISTOGRAM
        for part in ("bucket", "count", "sum")
    }
    assert named and named <= exported, named - exported
    # Every metric is on the dashboard somewhere.
    assert {name.removesuffix("_bucket") for name in named} >= set(SPECS)
