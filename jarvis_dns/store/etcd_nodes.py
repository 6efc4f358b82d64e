"""The nodes of a cluster, as etcd sees them: membership and one elected leader.

Each node announces itself under ``<prefix>/<zone>/nodes/<name>``, attached to a node
lease of ``--node-ttl`` seconds that it keeps alive three times per TTL; a node that
dies stops renewing, etcd deletes its key within one TTL, and every other node's watch
sees it leave. The leader is whoever holds ``<prefix>/<zone>/leader`` (created only if
absent, attached to the holder's node lease): it goes with its holder's lease. Every
node asks for it (a txn: take it if absent, else read who has it) at every renewal and
whenever the member list changes, so a new leader is in place within one node TTL of
the old one's death, and at once when it leaves cleanly.

While etcd is unreachable a node keeps the members and the leader it last saw: its
share of the checks goes on, and no decision is taken twice (leader actions are txns
that compare what they read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

from jarvis_dns.cluster import Listener, owner
from jarvis_dns.errors import StoreError
from jarvis_dns.models import Key
from jarvis_dns.store.etcd_api import EtcdClient, b64, op_put, prefix_end

log = logging.getLogger("jarvis_dns.cluster")
# After a failed renewal or watch, try again this soon (etcd may be electing a leader).
RETRY_S = 0.5


class EtcdNodes:
    def __init__(self, client: EtcdClient, root: str, name: str, ttl_s: float):
        """root: the zone's key prefix, `<prefix>/<zone>/` (EtcdStore.keys.root)."""
        self._client = client
        self._nodes = f"{root}nodes/"
        self._leader_key = f"{root}leader"
        self._name = name
        self._ttl = max(2, math.ceil(ttl_s))
        self._lease = 0
        self._members: dict[str, int] = {}  # name -> the mod revision we saw it at
        self._leader = ""
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []

    # -- the Nodes face (cluster.Nodes) --------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def members(self) -> Sequence[str]:
        return sorted(self._members)

    @property
    def leader(self) -> str:
        return self._leader

    @property
    def leading(self) -> bool:
        return self._leader == self._name

    def owns(self, key: Key) -> bool:
        # Before the first member list arrives this node counts itself alone.
        return owner(key, list(self._members) or [self._name]) == self._name

    def on_change(self, fn: Listener) -> None:
        self._listeners.append(fn)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Announce this node and learn the others; raises StoreError when etcd is down."""
        await self._announce()
        await self._read_members()
        await self._elect()
        for work in (self._renew_loop(), self._watch_members()):
            self._tasks.append(asyncio.create_task(work, name=f"etcd nodes {self._name}"))

    async def stop(self) -> None:
        """Leave at once (revoking the lease removes the announcement and any leadership)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._lease:
            with contextlib.suppress(StoreError):
                await self._client.lease_revoke(self._lease)
            self._lease = 0

    def status(self) -> dict[str, object]:
        return {
            "node": self._name,
            "members": self.members,
            "leader": self._leader or None,
            "node_ttl_s": self._ttl,
        }

    # -- announcing and renewing ---------------------------------------------------------

    async def _announce(self) -> None:
        self._lease = await self._client.lease_grant(self._ttl)
        await self._client.txn(success=[op_put(self._nodes + self._name, "", self._lease)])

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                alive = await self._client.lease_keepalive([self._lease])
                if not alive.get(self._lease):  # expired while etcd was away: come back
                    log.warning("node lease of %s lapsed; announcing again", self._name)
                    await self._announce()
                await self._elect()
            except StoreError as exc:
                log.warning("could not renew the node lease of %s: %s", self._name, exc)

    # -- members ----------------------------------------------------------------------------

    async def _read_members(self) -> int:
        found = await self._client.range(self._nodes, prefix_end(self._nodes))
        names = {kv.key.removeprefix(self._nodes): kv.mod_revision for kv in found.kvs}
        self._set_members(names)
        return found.revision

    def _set_members(self, names: dict[str, int]) -> None:
        changed = set(names) != set(self._members)
        self._members = names
        if changed:
            log.info("cluster members: %s", ", ".join(sorted(names)) or "none")
            self._tell()

    async def _watch_members(self) -> None:
        revision = 0
        while True:
            try:
                revision = await self._read_members()
                async for response in self._client.watch(
                    self._nodes, prefix_end(self._nodes), revision + 1
                ):
                    names = dict(self._members)
                    for event in response.events:
                        name = event.kv.key.removeprefix(self._nodes)
                        if event.deleted:
                            names.pop(name, None)
                        else:
                            names[name] = event.kv.mod_revision
                    self._set_members(names)
                    if self._leader not in names:  # it left: one of us takes over now
                        await self._elect()
            except StoreError as exc:
                log.debug("member watch interrupted: %s", exc)
            await asyncio.sleep(RETRY_S)

    # -- the leader ---------------------------------------------------------------------------

    async def _elect(self) -> None:
        """Take the leader key if nobody holds it; either way learn who does."""
        key = b64(self._leader_key)
        absent = {"target": "CREATE", "key": key, "result": "EQUAL", "create_revision": "0"}
        taken = await self._client.txn(
            compare=[absent],
            success=[op_put(self._leader_key, self._name, self._lease)],
            failure=[{"request_range": {"key": key}}],
        )
        holder = self._name
        if not taken.succeeded:
            kvs = taken.ranges()
            holder = kvs[0].value.decode() if kvs else ""
        self._set_leader(holder)

    def _set_leader(self, holder: str) -> None:
        if holder != self._leader:
            self._leader = holder
            log.info("cluster leader: %s%s", holder or "none", " (this node)" * self.leading)
            self._tell()

    def _tell(self) -> None:
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # one listener's bug must not stop the others hearing it
                log.exception("a cluster listener failed")
