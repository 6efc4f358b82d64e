"""A small typed async client for etcd v3 through etcd's own JSON gateway (aiohttp).

Why the gateway rather than aetcd or etcd3aio: those wrap grpcio, a large binary
dependency with its own threads and its own channel/retry machinery; this client needs
seven endpoints of a documented JSON API and the aiohttp we already ship. It also keeps
the two things the cluster depends on under our control: failover (the endpoints are
tried in turn on connection errors, timeouts and 5xx answers, and the last one that
answered is tried first next time) and time bounds (every request has its own timeout
and an overall deadline, so a write without quorum fails in seconds instead of hanging).

The gateway speaks the gRPC messages as JSON: keys and values are base64, int64s are
strings, fields at their zero value are left out. Endpoints used: /v3/kv/range,
/v3/kv/txn, /v3/watch (a stream of newline-delimited JSON), /v3/lease/grant,
/v3/lease/keepalive (several lease ids in one request body, one answer line each; sent
to the leader first, found with /v3/maintenance/status) and /v3/lease/revoke.

Retrying a request on another endpoint after a timeout can run it twice. The store
only retries what is safe to run twice: txns guarded by compares on mod revisions (a
second run fails its compare) and idempotent puts, keepalives and revokes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from jarvis_dns import jsontext
from jarvis_dns.errors import StoreError

log = logging.getLogger("jarvis_dns.store.etcd")

JSON = dict[str, Any]
# One request to one member: past this it counts as down and the next one is tried.
REQUEST_TIMEOUT_S = 2.0
# All the endpoints together: a write without quorum fails within this.
DEADLINE_S = 3.0
CONNECT_TIMEOUT_S = 1.0
# How often a client asks its endpoints which member leads (in the background): lease
# keepalives go straight to the leader. A follower forwards every renewal to the leader
# over HTTP (etcd 3.4); measured here through the gateway, 2,000 leases a round: 143 us
# of the follower's CPU plus 50 of the leader's per lease, against 37 sent to the leader.
LEADER_CHECK_S = 5.0
# gRPC metadata through the gateway: etcd ends a watch whose member has lost its leader
# (rpctypes.MetadataRequireLeaderKey). A plain watch on a member without quorum stays
# open and silent, so a node would never notice it answers from a stale view.
REQUIRE_LEADER = {"Grpc-Metadata-Hasleader": "true"}


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The range_end that covers every key starting with prefix (its last byte + 1)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdUnavailable(StoreError):
    """No listed endpoint answered in time (down, unreachable or without quorum)."""


class EtcdRefused(StoreError):
    """etcd answered with an error (a 4xx: a missing lease, a bad request)."""

    def __init__(self, message: str, status: int, body: JSON) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def decode(cls, kv: JSON) -> KeyValue:
        return cls(
            key=unb64(kv["key"]).decode(),
            value=unb64(kv.get("value", "")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
            lease=int(kv.get("lease", 0)),
        )


@dataclass(frozen=True, slots=True)
class WatchEvent:
    deleted: bool
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchResponse:
    revision: int  # the header's: the store's revision when this was sent
    events: list[WatchEvent] = field(default_factory=list)
    compact_revision: int = 0  # set (and the watch cancelled) when start was compacted
    canceled: bool = False


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: list[KeyValue]
    more: bool


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[JSON]

    def ranges(self) -> list[KeyValue]:
        """The kvs of every range operation in the branch that ran."""
        found: list[KeyValue] = []
        for response in self.responses:
            ranged = response.get("response_range")
            if ranged:
                found += [KeyValue.decode(kv) for kv in ranged.get("kvs", [])]
        return found


# -- request operations (the JSON shapes of etcd's RequestOp / Compare) ---------------


def op_put(key: str, value: str | bytes, lease: int = 0) -> JSON:
    put: JSON = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def op_delete(key: str) -> JSON:
    return {"request_delete_range": {"key": b64(key)}}


def op_range(key: str) -> JSON:
    return {"request_range": {"key": b64(key)}}


def op_txn(compare: Sequence[JSON], success: Sequence[JSON]) -> JSON:
    """A nested txn: its own compares, applied inside the outer one (etcd >= 3.3)."""
    return {"request_txn": {"compare": list(compare), "success": list(success)}}


def mod_revision_is(key: str, revision: int) -> JSON:
    """Compare: key's mod revision equals revision (0: the key is absent)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


class EtcdClient:
    def __init__(
        self,
        endpoints: Sequence[str],
        request_timeout: float = REQUEST_TIMEOUT_S,
        deadline: float = DEADLINE_S,
        leader_check_s: float = LEADER_CHECK_S,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.endpoints = [e if "://" in e else f"http://{e}" for e in endpoints]
        self.request_timeout = request_timeout
        self.deadline = deadline
        self._good = 0  # index of the endpoint that answered last
        self.watching = ""  # the endpoint the last watch was opened on
        self.leader: str | None = None  # the endpoint that led when last asked
        self.leader_check_s = leader_check_s
        self._leader_asked = -math.inf
        self._asking: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def current(self) -> str:
        """The endpoint requests try first (the last one that answered)."""
        return self.endpoints[self._good]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
                connector=aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True),
            )
        return self._session

    async def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._asking
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- failover -----------------------------------------------------------------

    def _order(self, first: str | None = None) -> list[int]:
        n = len(self.endpoints)
        start = self._good if first is None else self.endpoints.index(first)
        return [(start + i) % n for i in range(n)]

    async def call(self, path: str, body: JSON | str, first: str | None = None) -> list[JSON]:
        """POST body to the first endpoint that answers (``first``, if given, is
        tried before the others); the answer's JSON lines.

        Connection errors, timeouts and 5xx move on to the next endpoint; a 4xx is
        etcd's answer and raises EtcdRefused; no answer from any endpoint within the
        deadline raises EtcdUnavailable."""
        data = body if isinstance(body, str) else jsontext.encode(body)
        started = time.monotonic()
        failures: list[str] = []
        for i in self._order(first):
            remaining = self.deadline - (time.monotonic() - started)
            if remaining <= 0:
                break
            endpoint = self.endpoints[i]
            try:
                async with asyncio.timeout(min(self.request_timeout, remaining)):
                    async with self._http().post(endpoint + path, data=data) as response:
                        text = await response.text()
                        status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures.append(f"{endpoint}: {type(exc).__name__} {exc}".rstrip())
                continue
            if status >= 500:
                failures.append(f"{endpoint}: HTTP {status} {_error_text(text)}")
                continue
            self._good = i
            lines = [jsontext.decode_gateway(line) for line in text.splitlines() if line.strip()]
            if status >= 400:
                body_json = lines[0] if lines else {}
                raise EtcdRefused(f"etcd refused {path}: {_error_text(text)}", status, body_json)
            return lines
        raise EtcdUnavailable(
            f"etcd unavailable (no quorum or no member reachable) for {path}: "
            + "; ".join(failures or ["deadline passed"])
        )

    async def call_one(self, path: str, body: JSON) -> JSON:
        lines = await self.call(path, body)
        if not lines:
            raise StoreError(f"etcd answered {path} with nothing")
        return lines[0]

    # -- KV -------------------------------------------------------------------------

    async def range(
        self,
        key: str,
        range_end: str | None = None,
        revision: int = 0,
        limit: int = 0,
        newest_first: bool = False,
    ) -> RangeResult:
        body: JSON = {"key": b64(key)}
        if newest_first:  # by mod_revision, descending
            body["sort_order"] = "DESCEND"
            body["sort_target"] = "MOD"
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        answer = await self.call_one("/v3/kv/range", body)
        return RangeResult(
            revision=int(answer["header"]["revision"]),
            kvs=[KeyValue.decode(kv) for kv in answer.get("kvs", [])],
            more=bool(answer.get("more", False)),
        )

    async def txn(
        self,
        compare: Sequence[JSON] = (),
        success: Sequence[JSON] = (),
        failure: Sequence[JSON] = (),
    ) -> TxnResult:
        body: JSON = {"compare": list(compare), "success": list(success)}
        if failure:
            body["failure"] = list(failure)
        answer = await self.call_one("/v3/kv/txn", body)
        return TxnResult(
            succeeded=bool(answer.get("succeeded", False)),
            revision=int(answer["header"]["revision"]),
            responses=list(answer.get("responses", [])),
        )

    # -- leases -------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> int:
        answer = await self.call_one("/v3/lease/grant", {"TTL": str(ttl)})
        if answer.get("error"):
            raise StoreError(f"etcd did not grant a lease: {answer['error']}")
        return int(answer["ID"])

    async def lease_keepalive(self, leases: Sequence[int]) -> dict[int, int]:
        """Keep the leases alive: lease -> TTL left, 0 for a lease that is gone (expired
        or revoked), one for every lease asked; StoreError when etcd answers none.

        All go in one streamed request, a JSON line each. The gateway often ends its
        answer early and drops the renewals it had not passed on (etcd-io/etcd#8237;
        here, a third to nine tenths of 1,000): a lease it did not answer is neither
        renewed nor gone, so it goes again, until every one is answered."""
        alive: dict[int, int] = {}
        pending = list(dict.fromkeys(leases))
        while pending:
            body = "".join(f'{{"ID":"{lease}"}}\n' for lease in pending)
            for line in await self.call("/v3/lease/keepalive", body, first=self._leader()):
                result = line.get("result") or {}
                if "ID" in result:
                    alive[int(result["ID"])] = int(result.get("TTL", 0))
            left = [lease for lease in pending if lease not in alive]
            if len(left) == len(pending):
                raise StoreError(f"etcd answered none of {len(left)} lease renewals")
            pending = left
        return alive

    def _leader(self) -> str | None:
        """The leader's endpoint as last found (None: not known); asked again in the
        background when the answer is older than leader_check_s, so a renewal never
        waits for the question (or for a member that does not answer it)."""
        now = time.monotonic()
        if self._asking is None and now - self._leader_asked >= self.leader_check_s:
            self._leader_asked = now
            self._asking = asyncio.create_task(self._ask_leader(), name="which etcd leads")
        return self.leader

    async def _ask_leader(self) -> None:
        try:
            self.leader = await self.find_leader()
        finally:
            self._asking = None

    async def find_leader(self) -> str | None:
        """The listed endpoint whose member leads (its status names itself leader)."""
        for endpoint in self.endpoints:
            try:
                async with asyncio.timeout(self.request_timeout):
                    url = endpoint + "/v3/maintenance/status"
                    async with self._http().post(url, data="{}") as response:
                        if response.status != 200:
                            continue
                        status = jsontext.decode_gateway(await response.text())
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                continue
            leader = status.get("leader")
            if leader and leader == status.get("header", {}).get("member_id"):
                return endpoint
        return None

    async def lease_revoke(self, lease: int) -> None:
        try:
            await self.call_one("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdRefused:  # gone already
            return

    # -- watch ----------------------------------------------------------------------------

    async def watch(
        self, key: str, range_end: str, start_revision: int
    ) -> AsyncIterator[WatchResponse]:
        """One watch stream from start_revision, on the first endpoint that takes it.

        Ends (raises EtcdUnavailable) when the stream breaks; the caller resumes it from
        the last revision it has, possibly on another endpoint."""
        body = json.dumps(
            {
                "create_request": {
                    "key": b64(key),
                    "range_end": b64(range_end),
                    "start_revision": str(start_revision),
                }
            }
        )
        response: aiohttp.ClientResponse | None = None
        failures: list[str] = []
        for i in self._order():
            endpoint = self.endpoints[i]
            try:
                async with asyncio.timeout(self.request_timeout):
                    response = await self._http().post(
                        endpoint + "/v3/watch", data=body, headers=REQUIRE_LEADER
                    )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures.append(f"{endpoint}: {type(exc).__name__} {exc}".rstrip())
                continue
            if response.status != 200:
                failures.append(f"{endpoint}: HTTP {response.status}")
                response.release()
                response = None
                continue
            self._good = i
            self.watching = endpoint
            break
        if response is None:
            raise EtcdUnavailable("no etcd endpoint takes a watch: " + "; ".join(failures))
        try:
            async for line in _lines(response, self.watching):
                message = jsontext.decode_gateway(line)
                if "error" in message:
                    raise EtcdUnavailable(f"the watch on {self.watching} failed: {message}")
                result = message.get("result") or {}
                yield WatchResponse(
                    revision=int(result.get("header", {}).get("revision", 0)),
                    events=[
                        WatchEvent(e.get("type") == "DELETE", KeyValue.decode(e["kv"]))
                        for e in result.get("events", [])
                    ],
                    compact_revision=int(result.get("compact_revision", 0)),
                    canceled=bool(result.get("canceled", False)),
                )
        finally:
            response.close()


async def _lines(response: aiohttp.ClientResponse, endpoint: str) -> AsyncIterator[bytes]:
    """The stream's newline-delimited messages, however long (catching up on a burst,
    one message can hold a thousand revisions: more than StreamReader.readline takes)."""
    pending = bytearray()
    while True:
        try:
            chunk = await response.content.readany()
        except (aiohttp.ClientError, OSError) as exc:
            raise EtcdUnavailable(f"the watch on {endpoint} broke: {exc}") from exc
        if not chunk:
            raise EtcdUnavailable(f"the watch on {endpoint} ended")
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            line = bytes(pending[start:end]).strip()
            if line:
                yield line
            start = end + 1
        del pending[:start]


def _error_text(text: str) -> str:
    try:
        body = jsontext.decode_gateway(text.splitlines()[0]) if text.strip() else {}
    except ValueError:
        return text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return text[:200]
