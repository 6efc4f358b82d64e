"""etcd://h1:2379,h2:2379,h3:2379?prefix=/jarvis-dns — the store several nodes share.

Every node keeps its own view; etcd is the log they all apply. The change index is the
etcd revision of the batch's txn. Keys, under ``<prefix>/<zone>/``:

* ``instances/<svc>/<id>``: the Instance JSON of its last full write; its create and
  modify index are the key's create_revision and mod_revision (the JSON's are ignored).
* ``services/<svc>``: empty, rewritten by every batch that touches the service, so its
  mod_revision is the service's index (which outlives the service's last instance) and
  the revision a stale writer must catch up to.
* ``events/<node>.<n>.<seq>``: one per event; its index is its mod_revision, and the log
  is ordered by (mod_revision, seq). Each commit deletes the oldest ones beyond
  event_log_size in the same txn, so the log stays bounded without extra revisions.
* ``live/<svc>/<id>``: liveness, {last_heartbeat, metrics, check_output, ttl, node},
  attached to the instance's lease. An instance gets a lease of ttl_s when a batch puts
  it active for the first time (registered, revived, set active) or with a new ttl; the
  batch's txn writes the live key with it. Heartbeats to any node are noted in that
  node's liveness buffer, and the flush (write_liveness) sends keepalives for their
  leases (no Raft write) and puts the live key only when metrics or check output
  changed. When no node keeps a lease alive, etcd deletes the live key: that DELETE,
  seen in the watch, is the instance's TTL expiry, handed out by ``expirations()`` (the
  elected node turns it into an Expire command). A live value overrides the instance's
  liveness fields only if it was written at or after the instance's last full write.

commit(batch) is one txn: compare the mod_revision of every key in batch.reads (0:
absent), and on success write the instances, the live keys of new leases, the service
keys and the events; on failure it reads the service keys of what the plan read, and
StaleRead carries their newest mod_revision (always a batch's revision, which the view
reaches by applying batches; the header revision may be a liveness write's, which it
never does). The view's index counts batches only: load() returns the newest revision
of an instance, service or event key, and liveness writes do not move it.

changes(from_index) is one watch on the zone's range. Each revision becomes one Batch
(instance puts and deletes, events), a liveness write of another node becomes
(0, Touch), and a lease expiry goes to expirations(). When the stream breaks the watch
is opened again, on the next endpoint that takes it, from the last revision handed
out; if that revision was compacted, everything is loaded again and handed out as one
Reload (store/base.py).

Unreachable etcd or a cluster without quorum raises StoreError within the client's
deadline (etcd_api.DEADLINE_S); the watch keeps retrying until close().
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from jarvis_dns import jsontext
from jarvis_dns.errors import ConfigError, StaleRead, StoreError
from jarvis_dns.models import (
    Batch,
    Event,
    Instance,
    JSONObject,
    Key,
    LivenessRow,
    Snapshot,
    Status,
)
from jarvis_dns.registry.plan import Touch
from jarvis_dns.store.base import Reload
from jarvis_dns.store.etcd_api import (
    JSON,
    EtcdClient,
    EtcdUnavailable,
    KeyValue,
    WatchEvent,
    mod_revision_is,
    op_delete,
    op_put,
    op_range,
    op_txn,
    prefix_end,
)

log = logging.getLogger("jarvis_dns.store.etcd")

DEFAULT_PREFIX = "/jarvis-dns"
# Liveness rows per txn, each a nested txn of one compare and one put (etcd's
# --max-txn-ops defaults to 128 operations per txn).
LIVENESS_TXN_ROWS = 50
# Lease ids per keepalive request.
KEEPALIVE_CHUNK = 1000
# Requests one write_liveness (or load) keeps in flight at once.
CONCURRENT_REQUESTS = 8
# Keys per range request when loading.
PAGE = 1000
# The watch's pause before it reconnects, doubling up to the maximum.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0

# Expiries kept for expirations() to hand out; past it they are dropped (a node that is
# not the elected one may not read them at all).
EXPIRIES_QUEUED = 100_000

T = TypeVar("T")


@dataclass(slots=True)
class _Live:
    """What this node knows of an instance's live key."""

    lease: int
    ttl: int
    last_heartbeat: float
    metrics: JSONObject
    check_output: str
    node: str
    mod_revision: int

    @classmethod
    def decode(cls, kv: KeyValue) -> _Live:
        value = jsontext.decode(kv.value)
        return cls(
            lease=kv.lease,
            ttl=int(value.get("ttl", 0)),
            last_heartbeat=float(value["last_heartbeat"]),
            metrics=dict(value.get("metrics") or {}),
            check_output=str(value.get("check_output", "")),
            node=str(value.get("node", "")),
            mod_revision=kv.mod_revision,
        )


class _Keys:
    """The key layout under <prefix>/<zone>/."""

    def __init__(self, prefix: str, zone: str) -> None:
        self.root = f"{prefix.rstrip('/')}/{zone.strip('.').lower()}/"

    def instance(self, key: Key) -> str:
        return f"{self.root}instances/{key[0]}/{key[1]}"

    def live(self, key: Key) -> str:
        return f"{self.root}live/{key[0]}/{key[1]}"

    def service(self, service_type: str) -> str:
        return f"{self.root}services/{service_type}"

    def event(self, name: str) -> str:
        return f"{self.root}events/{name}"

    def parse(self, full: str) -> tuple[str, str]:
        """(kind, rest): kind is instances, live, services or events."""
        kind, _, rest = full[len(self.root) :].partition("/")
        return kind, rest


def _key(rest: str) -> Key:
    svc, _, iid = rest.partition("/")
    return (svc, iid)


def _seq(event_name: str) -> int:
    return int(event_name.rsplit(".", 1)[1])


def lease_ttl(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s))


class EtcdStore:
    echoes = True  # every batch, this node's own included, comes back through changes()

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = DEFAULT_PREFIX,
        zone: str = "jarvis",
        event_log_size: int = 10_000,
        client: EtcdClient | None = None,
    ) -> None:
        self.client = client or EtcdClient(endpoints)
        self.keys = _Keys(prefix, zone)
        self.event_log_size = event_log_size
        self.node = secrets.token_hex(4)  # marks this store's live writes and event keys
        self._counter = itertools.count(1)
        self._closed = False
        # What the watch (or load) has shown: the view's keys and their revisions ...
        self._instances: dict[Key, int] = {}
        # ... every live key ...
        self._live: dict[Key, _Live] = {}
        # ... and the event keys, oldest first, for trimming.
        self._event_rev: dict[str, int] = {}
        self._event_order: deque[str] = deque()
        self._trimming: set[str] = set()
        self._handed_out = 0  # the last revision changes() handed out
        self._loaded = (0, 0)  # the last load's (snapshot index, header revision)
        self._expired: asyncio.Queue[Key] = asyncio.Queue(EXPIRIES_QUEUED)
        self._tasks: set[asyncio.Task[None]] = set()
        # Since when this node has no working watch (None: it has one): /v1/health's
        # "unavailable" and view_age_s.
        self._down_since: float | None = time.monotonic()

    @classmethod
    def from_url(cls, url: str, zone: str, event_log_size: int = 10_000) -> EtcdStore:
        """etcd://h1:2379,h2:2379[?prefix=/jarvis-dns]"""
        parts = urlsplit(url)
        if parts.scheme != "etcd":
            raise ConfigError(f"not an etcd store URL: {url!r}")
        endpoints = [e.strip() for e in parts.netloc.split(",") if e.strip()]
        if not endpoints:
            raise ConfigError(f"no etcd endpoint in {url!r}: use etcd://host:2379[,host:port]")
        for endpoint in endpoints:
            host, _, port = endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"etcd endpoint {endpoint!r} in {url!r} is not host:port")
        query = parse_qs(parts.query)
        prefix = query.get("prefix", [DEFAULT_PREFIX])[0]
        if not prefix.startswith("/") or prefix.rstrip("/") == "":
            raise ConfigError(f"etcd prefix {prefix!r} must start with / and name something")
        return cls(endpoints, prefix, zone, event_log_size)

    # -- load ----------------------------------------------------------------------------

    async def load(self) -> Snapshot:
        snapshot, _ = await self._load()
        return snapshot

    async def _load(self) -> tuple[Snapshot, int]:
        """Everything under the zone at one revision; resets what this store knows."""
        revision, kvs = await self._read_all()
        instances: dict[Key, tuple[KeyValue, Instance]] = {}
        live: dict[Key, _Live] = {}
        services: dict[str, int] = {}
        events: list[tuple[int, int, str, Event]] = []
        for kv in kvs:
            kind, rest = self.keys.parse(kv.key)
            if kind == "instances":
                instances[_key(rest)] = (kv, self._instance(kv))
            elif kind == "live":
                live[_key(rest)] = _Live.decode(kv)
            elif kind == "services":
                services[rest] = kv.mod_revision
            elif kind == "events":
                event = Event.from_dict(jsontext.decode(kv.value))
                event = _reindexed(event, kv.mod_revision)
                events.append((kv.mod_revision, _seq(rest), rest, event))
        events.sort(key=lambda e: (e[0], e[1]))
        for key, (kv, inst) in instances.items():
            known = live.get(key)
            if known is not None and known.mod_revision >= kv.mod_revision:
                inst.last_heartbeat = known.last_heartbeat
                inst.metrics = known.metrics
                inst.check_output = known.check_output
        self._instances = {key: kv.mod_revision for key, (kv, _) in instances.items()}
        self._live = live
        self._event_rev = {name: rev for rev, _, name, _ in events}
        self._event_order = deque(name for _, _, name, _ in events)
        self._trimming = set()
        index = max(
            itertools.chain(
                (kv.mod_revision for kv, _ in instances.values()),
                services.values(),
                (rev for rev, _, _, _ in events),
            ),
            default=0,
        )
        self._handed_out = index
        self._loaded = (index, revision)
        snapshot = Snapshot(
            instances=[inst for _, inst in instances.values()],
            events=[e for _, _, _, e in events][-self.event_log_size :],
            index=index,
            service_indexes=services,
        )
        return snapshot, revision

    async def _read_all(self) -> tuple[int, list[KeyValue]]:
        root, end = self.keys.root, prefix_end(self.keys.root)
        first = await self.client.range(root, end, limit=PAGE)
        kvs, more, revision = list(first.kvs), first.more, first.revision
        while more and kvs:
            page = await self.client.range(kvs[-1].key + "\0", end, revision, PAGE)
            kvs += page.kvs
            more = page.more
        return revision, kvs

    # -- commit ----------------------------------------------------------------------------

    async def commit(self, batch: Batch) -> int:
        keys = self.keys
        compare = [mod_revision_is(keys.instance(k), seen) for k, seen in batch.reads.items()]
        ops: list[JSON] = [op_put(keys.instance(_of(i)), i.to_json()) for i in batch.puts]
        leased = self._needing_leases(batch)
        leases = await _gather(self.client.lease_grant(ttl) for _, ttl in leased)
        for (inst, ttl), lease in zip(leased, leases, strict=True):
            ops.append(op_put(keys.live(_of(inst)), self._live_value(inst, ttl), lease))
        for key in batch.deletes:
            ops += [op_delete(keys.instance(key)), op_delete(keys.live(key))]
        ops += [op_put(keys.service(svc), "") for svc in sorted(batch.services())]
        batch_id = f"{self.node}.{next(self._counter):x}"
        ops += [
            op_put(keys.event(f"{batch_id}.{seq}"), _dump_event(event))
            for seq, event in enumerate(batch.events)
        ]
        trim = self._take_trim(len(batch.events))
        ops += [op_delete(keys.event(name)) for name in trim]
        failure = [op_range(keys.service(svc)) for svc in sorted({k[0] for k in batch.reads})]
        # Leases the batch replaces or whose instance goes (taken before the txn: once it
        # lands, the watch may already have put the new leases here).
        replaced = [self._live[_of(i)].lease for i, _ in leased if _of(i) in self._live]
        replaced += [self._live[k].lease for k in batch.deletes if k in self._live]
        try:
            result = await self.client.txn(compare, ops, failure)
        except BaseException:
            self._untrim(trim)
            self._revoke_later(leases)
            raise
        if not result.succeeded:
            self._untrim(trim)
            self._revoke_later(leases)
            newest = max((kv.mod_revision for kv in result.ranges()), default=result.revision)
            stale = ", ".join(f"{svc}/{iid}" for svc, iid in batch.reads)
            raise StaleRead(f"{stale} changed since it was read (revision {newest})", newest)
        # Nothing is attached to the replaced leases any more: revoking them is tidying.
        self._revoke_later([lease for lease in replaced if lease and lease not in leases])
        return result.revision

    def _needing_leases(self, batch: Batch) -> list[tuple[Instance, int]]:
        """The active instances of a batch that need a fresh lease: new to liveness,
        turned active (revived) or with another ttl."""
        turned_active = {
            (e.service_type, str(e.instance_id))
            for e in batch.events
            if e.new_status is Status.ACTIVE and e.old_status is not Status.ACTIVE
        }
        needing = []
        for inst in batch.puts:
            if inst.status is not Status.ACTIVE:
                continue
            key, ttl = _of(inst), lease_ttl(inst.ttl_s)
            live = self._live.get(key)
            if live is None or not live.lease or live.ttl != ttl or key in turned_active:
                needing.append((inst, ttl))
        return needing

    def _live_value(self, inst: Instance | LivenessRow, ttl: int) -> str:
        value = {
            "last_heartbeat": inst.last_heartbeat,
            "metrics": inst.metrics,
            "check_output": inst.check_output,
            "ttl": ttl,
            "node": self.node,
        }
        return jsontext.encode(value)

    def _take_trim(self, adding: int) -> list[str]:
        """The oldest event keys to delete so the log keeps event_log_size events."""
        excess = len(self._event_rev) - len(self._trimming) + adding - self.event_log_size
        trim: list[str] = []
        order = self._event_order
        while excess > 0 and order:
            name = order.popleft()
            if name in self._event_rev and name not in self._trimming:
                trim.append(name)
                self._trimming.add(name)
                excess -= 1
        return trim

    def _untrim(self, trim: list[str]) -> None:
        for name in reversed(trim):
            self._trimming.discard(name)
            self._event_order.appendleft(name)

    def _revoke_later(self, leases: Iterable[int]) -> None:
        for lease in leases:
            self._spawn(self._revoke(lease))

    async def _revoke(self, lease: int) -> None:
        try:
            await self.client.lease_revoke(lease)
        except StoreError as exc:  # it expires by itself within its ttl
            log.debug("lease %x not revoked: %s", lease, exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- liveness ------------------------------------------------------------------------

    async def write_liveness(self, rows: Sequence[LivenessRow]) -> None:
        """Keep the leases of the beaten instances alive; write metrics and check output
        where they changed, each only while the instance is the one the row was taken
        from (a nested txn comparing its mod_revision)."""
        lives = {(r.service_type, r.key): self._live.get((r.service_type, r.key)) for r in rows}
        leases = sorted({live.lease for live in lives.values() if live and live.lease})
        chunks = [leases[i : i + KEEPALIVE_CHUNK] for i in range(0, len(leases), KEEPALIVE_CHUNK)]
        gone: set[int] = set()
        for answer in await _gather(self.client.lease_keepalive(c) for c in chunks):
            gone |= {lease for lease, ttl in answer.items() if ttl <= 0}
        writes: list[JSON] = []
        lapsed = [
            r for r in rows if (live := lives[(r.service_type, r.key)]) and live.lease in gone
        ]
        if lapsed:  # a beat arrived after etcd let the lease go: the instance lives on
            await _gather(self._lease_again(row, lives) for row in lapsed)
        for row in rows:
            key = (row.service_type, row.key)
            live = lives[key]
            if live is not None and live.lease in gone:
                continue  # leased again above (or expiring: the Expire carries it)
            if live is not None and (live.metrics, live.check_output) == (
                row.metrics,
                row.check_output,
            ):
                continue  # nothing for other nodes: the keepalive was all it took
            put = op_put(
                self.keys.live(key),
                self._live_value(row, live.ttl if live else 0),
                live.lease if live else 0,
            )
            same = mod_revision_is(self.keys.instance(key), row.modify_index)
            writes.append(op_txn([same], [put]))
        txns = [writes[i : i + LIVENESS_TXN_ROWS] for i in range(0, len(writes), LIVENESS_TXN_ROWS)]
        await _gather(self.client.txn(success=txn) for txn in txns)

    async def _lease_again(self, row: LivenessRow, lives: dict[Key, _Live | None]) -> None:
        """A new lease for an instance whose lease lapsed while its client still beats
        (held by self-preservation, or beaten again before the leader expired it), if
        the instance is still the one the beat was for."""
        key = (row.service_type, row.key)
        live = lives[key]
        ttl = live.ttl if live is not None and live.ttl else 1
        lease = await self.client.lease_grant(ttl)
        put = op_put(self.keys.live(key), self._live_value(row, ttl), lease)
        same = mod_revision_is(self.keys.instance(key), row.modify_index)
        if not (await self.client.txn([same], [put])).succeeded:
            self._revoke_later([lease])  # it changed meanwhile (expired, say): not ours

    async def latest_index(self) -> int:
        """The newest batch's revision in etcd (every batch rewrites a service key), for a
        node that must see what other nodes committed before it answers 404."""
        services = self.keys.service("")
        found = await self.client.range(services, prefix_end(services), limit=1, newest_first=True)
        return found.kvs[0].mod_revision if found.kvs else 0

    async def expirations(self) -> AsyncIterator[Key]:
        """Instances whose lease etcd let expire (no node kept it alive), each once, as
        this store's changes() watch sees them; for the elected node to Expire."""
        while not self._closed:
            yield await self._expired.get()

    def without_lease(self, keys: Iterable[Key]) -> list[Key]:
        """Those of keys with no live lease as this store's watch has seen it: for a node
        just elected, the active instances whose expiry it may have missed (an expiry
        seen while another node led, or dropped from a full queue)."""
        return [key for key in keys if not (live := self._live.get(key)) or not live.lease]

    # -- the watch -------------------------------------------------------------------------

    async def changes(self, from_index: int) -> AsyncIterator[tuple[int, Batch | Touch]]:
        # From the view's index; from the load's revision when the view is that load
        # (what lies between is liveness the load has, and may be compacted away).
        index, loaded_at = self._loaded
        revision = loaded_at if from_index == index else max(from_index, 0)
        pause = RETRY_FIRST_S
        root = self.keys.root
        while not self._closed:
            try:
                async for response in self.client.watch(root, prefix_end(root), revision + 1):
                    pause = RETRY_FIRST_S
                    self._down_since = None
                    if response.compact_revision:
                        log.warning(
                            "etcd compacted revision %d away (now at %d): loading everything",
                            revision + 1,
                            response.compact_revision,
                        )
                        reload, revision = await self._reload()
                        if reload.index:
                            yield reload.index, reload
                        break
                    for group_revision, group in _by_revision(response.events):
                        for index, change in self._decode(group_revision, group):
                            yield index, change
                        revision = group_revision
            except StoreError as exc:
                if self._closed:
                    return
                if self._down_since is None:
                    self._down_since = time.monotonic()
                log.warning("etcd watch lost (%s); resuming from revision %d", exc, revision + 1)
                await asyncio.sleep(pause)
                pause = min(RETRY_MAX_S, pause * 2)

    def _decode(self, revision: int, group: list[WatchEvent]) -> list[tuple[int, Batch | Touch]]:
        """One revision's events: a Batch, other nodes' liveness (Touch), expiries."""
        puts: dict[Key, Instance] = {}
        deletes: list[Key] = []
        events: list[tuple[int, Event]] = []
        live_puts: dict[Key, KeyValue] = {}
        live_deletes: list[Key] = []
        for change in group:
            kv = change.kv
            kind, rest = self.keys.parse(kv.key)
            if kind == "instances":
                key = _key(rest)
                if change.deleted:
                    deletes.append(key)
                    self._instances.pop(key, None)
                else:
                    puts[key] = self._instance(kv)
                    self._instances[key] = revision
            elif kind == "events":
                if change.deleted:
                    self._event_rev.pop(rest, None)
                    self._trimming.discard(rest)
                elif rest not in self._event_rev:
                    self._event_rev[rest] = revision
                    self._event_order.append(rest)
                    event = Event.from_dict(jsontext.decode(kv.value))
                    events.append((_seq(rest), _reindexed(event, revision)))
            elif kind == "live":
                if change.deleted:
                    live_deletes.append(_key(rest))
                else:
                    live_puts[_key(rest)] = kv
        out: list[tuple[int, Batch | Touch]] = []
        if revision > self._handed_out and (puts or deletes or events):
            events.sort(key=lambda e: e[0])
            batch = Batch(list(puts.values()), deletes, [e for _, e in events])
            out.append((revision, batch))
            self._handed_out = revision
        for key, kv in live_puts.items():
            live = _Live.decode(kv)
            self._live[key] = live
            if key not in puts and key in self._instances and live.node != self.node:
                touch = Touch(key, live.last_heartbeat, live.metrics, live.check_output)
                out.append((0, touch))
        for key in live_deletes:
            self._live.pop(key, None)
            if key not in puts and key not in deletes and key in self._instances:
                self._expire(key)  # the lease expired: etcd's decision
        return out

    async def _reload(self) -> tuple[Reload, int]:
        """Load everything again; the Reload that brings a view fed by this store there."""
        had = set(self._instances)
        leased = {key for key, live in self._live.items() if live.lease}
        handed_out = self._handed_out
        snapshot, revision = await self._load()
        present = {_of(inst) for inst in snapshot.instances}
        reload = Reload(
            puts=list(snapshot.instances),
            deletes=sorted(had - present),
            events=[e for e in snapshot.events if e.index > handed_out],
            snapshot=snapshot,
        )
        reload.index = snapshot.index if snapshot.index > handed_out else 0
        for key in sorted((leased & present) - set(self._live)):
            self._expire(key)  # expired while the watch was away
        return reload, revision

    # -- helpers ---------------------------------------------------------------------------

    def _expire(self, key: Key) -> None:
        try:
            self._expired.put_nowait(key)
        except asyncio.QueueFull:  # nobody reads them here: without_lease() finds them
            log.debug("expiry of %s/%s not queued: nobody reads expirations()", *key)

    def _instance(self, kv: KeyValue) -> Instance:
        inst = Instance.from_dict(jsontext.decode(kv.value))
        inst.create_index = kv.create_revision
        inst.modify_index = kv.mod_revision
        return inst

    def status(self) -> JSON:
        """For /v1/health: ok while the watch is open; otherwise unavailable, and how old
        the view this node answers from is."""
        if self._down_since is None:
            return {"backend": "etcd", "state": "ok", "view_age_s": 0.0}
        age = round(time.monotonic() - self._down_since, 3)
        return {"backend": "etcd", "state": "unavailable", "view_age_s": age}

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        if tasks:  # revokes in flight: bounded by the client's deadline
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()


def _of(inst: Instance) -> Key:
    return (inst.service_type, inst.key)


def _reindexed(event: Event, index: int) -> Event:
    return event if event.index == index else dataclasses.replace(event, index=index)


def _dump_event(event: Event) -> str:
    return jsontext.encode(event.to_dict())


def _by_revision(events: list[WatchEvent]) -> list[tuple[int, list[WatchEvent]]]:
    groups: list[tuple[int, list[WatchEvent]]] = []
    for event in events:
        revision = event.kv.mod_revision
        if groups and groups[-1][0] == revision:
            groups[-1][1].append(event)
        else:
            groups.append((revision, [event]))
    return groups


async def _gather(work: Iterable[Awaitable[T]]) -> list[T]:
    """Run them with at most CONCURRENT_REQUESTS in flight; results in order."""
    limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def one(awaitable: Awaitable[T]) -> T:
        async with limit:
            return await awaitable

    return list(await asyncio.gather(*(one(w) for w in work)))


__all__ = ["EtcdStore", "EtcdUnavailable", "Reload"]
