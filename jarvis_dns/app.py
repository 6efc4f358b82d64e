"""Composition root: config -> store -> view -> changes -> health -> DNS + HTTP.

The only module that names store backends. Owns start-up order, the liveness flusher,
the follower of other nodes' changes, signals and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from jarvis_dns import security
from jarvis_dns.acl import Acl
from jarvis_dns.changes import Changes
from jarvis_dns.cluster import Nodes, Solo
from jarvis_dns.config import Config, split_hostport
from jarvis_dns.discovery import Discovery
from jarvis_dns.dns import build as build_dns
from jarvis_dns.dns.content import ZoneContent
from jarvis_dns.dns.localnets import listening_hosts, own_networks
from jarvis_dns.dns.notifier import Notifier, parse_targets
from jarvis_dns.dns.operations import Operations
from jarvis_dns.dns.responder import Responder
from jarvis_dns.dns.server import DnsServer
from jarvis_dns.dns.xfr import Transfers
from jarvis_dns.dns.zones import StaticZone, ZoneSet
from jarvis_dns.errors import ConfigError, JarvisError
from jarvis_dns.gate import Gate
from jarvis_dns.health import HealthMonitor
from jarvis_dns.http.blocking import IndexWaiter
from jarvis_dns.http.common import CONTEXT, Context, Hooks
from jarvis_dns.http.lane import Lane
from jarvis_dns.http.routes import make_web_app
from jarvis_dns.http.site import GuardedSite
from jarvis_dns.metrics import Metrics
from jarvis_dns.registry import EventLog, View
from jarvis_dns.store.base import Store
from jarvis_dns.store.etcd import EtcdStore
from jarvis_dns.store.etcd_nodes import EtcdNodes
from jarvis_dns.store.memory import MemoryStore
from jarvis_dns.store.sqlite import SqliteStore

log = logging.getLogger("jarvis_dns")


def open_store(config: Config) -> Store:
    url = config.store_url()
    if url == "memory://":
        return MemoryStore(config.event_log_size)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite://"))
        _check_writable(path.parent)
        return SqliteStore(path, config.event_log_size)
    if url.startswith("etcd://"):
        return EtcdStore.from_url(url, config.zone, config.event_log_size)
    raise ConfigError(
        f"unknown store {url!r}: use memory://, sqlite:///path or etcd://host:port[,host:port]"
    )


def open_nodes(config: Config, store: Store) -> Nodes:
    """The cluster this node is part of: the etcd members' nodes, or itself alone."""
    host, port = split_hostport(config.http, 9000)
    name = config.node or (f"{host}:{port}" if port else f"{host}:pid{os.getpid()}")
    if isinstance(store, EtcdStore):
        return EtcdNodes(store.client, store.keys.root, name, config.node_ttl_s)
    return Solo(name)


def report_cluster(metrics: Metrics, nodes: Nodes, store: Store) -> None:
    """The cluster's figures, when there is a cluster (an etcd store)."""
    if not isinstance(nodes, EtcdNodes) or not isinstance(store, EtcdStore):
        return
    metrics.gauge("jarvis_cluster_members", lambda: len(nodes.members))
    metrics.gauge("jarvis_cluster_leader", lambda: nodes.leading)
    metrics.gauge("jarvis_store_view_age_seconds", lambda: float(store.view_age_s()))


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data dir {directory} is not writable: {exc.strerror}") from None


def open_transfers(responder: Responder, config: Config) -> Transfers:
    """What zone transfers read: the registry zone as the responder answers it, the
    zone files beside it, and the journal of changes (as long as the event log)."""
    authority = responder.authority

    def static() -> dict[str, StaticZone]:
        return {o: z for o, z in authority.zones.items() if o != authority.zone}

    return Transfers(ZoneContent(authority), config.event_log_size, static)


def open_notifier(transfers: Transfers, config: Config) -> Notifier:
    return Notifier(parse_targets(config.notify), transfers.up_to_date_soa, config.zone)


class App:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        dot_tls = security.dot_tls(config)  # before the store: a bad setting opens nothing
        self.metrics = Metrics()  # every part below reports into it (GET /metrics)
        self.store = open_store(config)
        events = EventLog(config.event_log_size)
        self.changes = Changes(self.store, clock, events=events, metrics=self.metrics)
        self.discovery = Discovery(self.changes.view)
        self.waiter = IndexWaiter(self.changes, config.max_waiting_queries, self.metrics)
        zones = ZoneSet(config.zones_dir, config.zone)
        responder = build_dns(self.discovery, zones, config, metrics=self.metrics)
        self.transfers: Transfers | None = None
        self.notifier: Notifier | None = None
        operations = None
        if config.tsig_keys or config.transfer_allow or config.notify:
            self.transfers = open_transfers(responder, config)
            localnets = partial(own_networks, listening_hosts(config))
            operations = Operations(
                responder, self.changes, self.transfers, config, clock, localnets
            )
            if config.notify:
                self.notifier = open_notifier(self.transfers, config)
        self.dns = DnsServer(responder, self.changes, config, tls=dot_tls, operations=operations)
        self.nodes = open_nodes(config, self.store)
        report_cluster(self.metrics, self.nodes, self.store)
        leases = self.store if isinstance(self.store, EtcdStore) else None
        self.health = HealthMonitor(
            self.changes, config, clock=clock, nodes=self.nodes, leases=leases, metrics=self.metrics
        )
        self.acl = Acl(config.acl, config.acl_anonymous)
        self.tokens = security.open_tokens(self.store)
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._token_follower: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self.http_port = 0
        self.http_gate = Gate(config.http_max_connections, config.http_max_connections_per_client)
        gate = self.http_gate
        self.metrics.gauge("jarvis_http_connections_open", lambda: gate.open)
        self.metrics.reading("jarvis_http_connections_refused_total", lambda: [((), gate.refused)])

    @property
    def http_url(self) -> str:
        host, _ = split_hostport(self.config.http, 9000)
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{host}:{self.http_port}"

    @property
    def view(self) -> View:
        return self.changes.view

    @property
    def dns_addresses(self) -> list[tuple[str, int]]:
        return self.dns.addresses

    def web_app(self) -> web.Application:
        ctx = Context(self.changes, self.discovery, self.config, self.waiter, self._hooks())
        ctx.acl, ctx.tokens, ctx.metrics = self.acl, self.tokens, self.metrics
        return make_web_app(ctx)

    def _hooks(self) -> Hooks:
        return Hooks(
            health_status=self.health.status,
            dns_stats=self.dns.stats,
            reload_zones=self.reload_dns_zones,
            clear_self_preservation=self.health.clear_self_preservation,
            store_status=self.store.status,
            cluster_status=self.nodes.status,
            dns_answer=self._dns_answer,
        )

    def _dns_answer(self, wire: bytes) -> bytes | None:
        reply = self.dns.answer(wire, udp=False)
        return reply if isinstance(reply, bytes) else None

    async def start(self) -> None:
        """The store's state first, then DNS and the monitor, HTTP last: once /v1/health
        answers, all of it is up."""
        security.check_protected_mode(self.config)
        try:
            if self.config.acl:
                await self._load_acl()
            await self.changes.load()
            self._follower = asyncio.create_task(self.changes.follow(), name="follow store")
            if isinstance(self.nodes, EtcdNodes):
                await self.nodes.start()
            await self.dns.start()
            await self._start_replication()
            await self.health.start()
            await self._start_http()
        except BaseException:
            await self.stop()
            raise
        self._flusher = asyncio.create_task(self._flush_loop())
        log.info(
            "serving zone %s: http %s, dns %s%s, store %s, %d instances restored at index %d",
            self.config.zone,
            self.http_url,
            " ".join(f"{h}:{p}" for h, p in self.dns_addresses),
            "".join(f", dns over tls {h}:{p}" for h, p in self.dns.dot_addresses),
            self.config.store_url(),
            self.view.count(),
            self.view.index,
        )

    async def _start_replication(self) -> None:
        """Zone transfers follow the view from here (zone files are loaded now), and
        secondaries hear of every change."""
        if self.transfers is not None:
            self.transfers.reloaded()
            self._unsubscribe.append(self.changes.subscribe(self.transfers.changed))
        if self.notifier is not None:
            self.notifier.source = self.dns_addresses[0][0]
            await self.notifier.start()
            self._unsubscribe.append(self.changes.subscribe(self.notifier.changed))
            if not self.config.transfer_allow:
                log.warning("--notify without --transfer-allow: secondaries will be refused")

    async def _load_acl(self) -> None:
        secret = security.bootstrap_secret(self.config)
        tokens = await self.tokens.load()
        self.acl = Acl(True, self.config.acl_anonymous, secret, tokens)
        if self.tokens.shared:
            follow = security.follow_tokens(self.acl, self.tokens, self.config.acl_refresh_s)
            self._token_follower = asyncio.create_task(follow, name="follow tokens")

    async def _start_http(self) -> None:
        host, port = split_hostport(self.config.http, 9000)
        # Blocking queries are answered at once on shutdown (waiter.close), so a short
        # grace is enough for the handlers in flight.
        cfg = self.config
        tls = security.server_tls(cfg)
        self._runner = web.AppRunner(
            self.web_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            keepalive_timeout=cfg.http_idle_timeout_s,
        )
        await self._runner.setup()
        lane = Lane(self._runner.app[CONTEXT]) if cfg.http_fast_lane else None
        site = GuardedSite(
            self._runner,
            host,
            port,
            self.http_gate,
            cfg.http_read_timeout_s,
            tls,
            lane=lane,
            max_body=cfg.max_body_bytes,
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError.listening("HTTP", self.config.http, exc) from None
        self.http_port = int(self._runner.addresses[0][1])

    async def _flush_loop(self) -> None:
        """Write heartbeat timestamps in batches: one flush a second, not a write a beat.
        Stopping lets a flush in progress finish."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.liveness_flush_s)
            await self.changes.flush_liveness()

    async def stop(self) -> None:
        if self._flusher is not None:
            self._stopping.set()
            await self._flusher
            self._flusher = None
        self.waiter.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.health.stop()
        if isinstance(self.nodes, EtcdNodes):
            await self.nodes.stop()  # leaves at once: its checks move to the others now
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.notifier is not None:
            await self.notifier.stop()
        await self.dns.stop()
        if self._token_follower is not None:
            self._token_follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._token_follower
            self._token_follower = None
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        await self.changes.flush_liveness()

    async def close(self) -> None:
        """Finish what the store has queued, then release it."""
        await self.store.close()
        self.tokens.close()

    def reload_dns_zones(self) -> list[str]:
        """Re-read the zone files (ZoneError keeps the old ones); transfers and
        secondaries follow."""
        zones = self.dns.reload_zones()
        if self.transfers is not None:
            self.transfers.reloaded()
        if self.notifier is not None:
            self.notifier.reloaded([self.config.zone, *zones])
        return zones

    def reload_zones(self) -> None:
        try:
            zones = self.reload_dns_zones()
            log.info("zones reloaded: %s", ", ".join(zones) or "none")
        except JarvisError as exc:
            log.error("zone reload failed, keeping the old data: %s", exc)


# Collections walk at most a few thousand objects (1-5 ms on a slow VM): young
# ones every 2,000 net new objects, and with a middle threshold of 0 every other one is
# a middle collection that moves what survived both to the old generation. A full
# collection walks that whole generation (140 ms for 30,000 registrations' worth on a
# slow VM, which found nothing to free): it needs 1,000 middle ones since the last
# (about 4 million net new objects) and, by CPython's own rule, the old generation
# grown by a quarter since. Cycles are made by few requests and die young (the young
# and middle collections of that flood freed 1,431 objects).
GC_THRESHOLDS = (2_000, 0, 1_000)


def _pause_gc() -> None:
    """No collections while the store restores the registry: what it builds lives on
    and is frozen once started, so walking it meanwhile is lost time (100,000 restored
    instances are about 600,000 objects, and walking each twice cost about half a second
    of a restart on a slow VM)."""
    gc.collect()  # what imports and configuration left
    gc.disable()


def _tune_gc() -> None:
    """Once started (or failing to), what start-up made moves to the permanent
    generation, so no later collection walks it again, and the collector runs again
    with GC_THRESHOLDS. A collection walks every object in the generations it collects
    (about 0.6 us each on a slow VM) and holds DNS and every request meanwhile: at
    Python's own thresholds (700/10/10) a flood of registrations meets full collections
    that walk everything that came since start (hundreds of thousands in
    tests/test_serve_gc.py); at young thresholds of 50,000 it met young collections of
    30-40 ms. Request handling frees its objects by reference counting and makes few
    cycles; what a registration keeps lives long."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()


async def serve(config: Config, ready: Callable[[App], Any] | None = None) -> None:
    """Run until SIGINT or SIGTERM; SIGHUP reloads zone files."""
    security.check_protected_mode(config)  # before anything starts, or logs
    app = App(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers before start: a SIGTERM during start-up still shuts down gracefully.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload_zones)
    try:
        _pause_gc()
        try:
            await app.start()
        finally:
            _tune_gc()
        if ready is not None:
            ready(app)
        await stop.wait()
        log.info("shutting down")
    finally:
        await app.stop()
        await app.close()
        log.info("stopped at index %d", app.view.index)
