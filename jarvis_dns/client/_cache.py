"""Instance lists per service type, kept fresh by blocking queries.

Each watched type costs one idle long-poll (`GET /v1/services/<svc>?index=N&wait=`):
the server answers as soon as the type changes, so the cache follows the registry
within a round trip. While the registry is unreachable, the last list is served for
up to `max_stale_s` (stale-if-error), and the outage is logged once per type.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from jarvis_dns.client._backoff import Backoff
from jarvis_dns.client._errors import json_body, request_error
from jarvis_dns.client._transport import Transport
from jarvis_dns.client._types import Clock, Sleep
from jarvis_dns.errors import BadResponse, RegistryUnavailable, RequestError
from jarvis_dns.models import InstanceId, JSONObject

log = logging.getLogger("jarvis_dns.client")

# The long-poll's own timeout must outlast the server's wait (which it may round up).
_POLL_SLACK_S = 10.0
# A server that answers a blocking query at once with no change is not blocking;
# polling it no faster than this keeps a misbehaving server from being hammered.
_MIN_POLL_S = 1.0


@dataclass(eq=False, slots=True)
class _Entry:
    service_type: str
    instances: list[JSONObject] = field(default_factory=list)
    index: int = 0
    url: str | None = None
    has_data: bool = False
    healthy: bool = False  # the last request for this type was answered
    fetched_at: float = 0.0
    stale_logged: bool = False
    generation: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def _key(instance_id: InstanceId) -> str:
    return str(instance_id)


def _wait_param(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


class InstanceCache:
    def __init__(
        self,
        transport: Transport,
        *,
        wait_s: float,
        max_stale_s: float,
        backoff: Backoff,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self._transport = transport
        self._wait_s = wait_s
        self._max_stale_s = max_stale_s
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._entries: dict[str, _Entry] = {}
        self._closed = False

    async def instances(self, service_type: str, *, fresh: bool = False) -> list[JSONObject]:
        """Every instance of the type (all statuses), stale-if-error.

        `fresh` asks the server even when the cache is current: heartbeat metrics do
        not move the change index, so a long-poll never brings them. Raises
        RegistryUnavailable (nothing recent enough known) or RequestError (bad name).
        """
        entry = self._entries.get(service_type)
        if entry is None:
            return await self._first_fetch(service_type)
        if entry.healthy and not fresh:
            return entry.instances
        try:
            await self._fetch(entry, blocking=False)
        except RegistryUnavailable:
            return self._stale(entry)
        return entry.instances

    async def changes(self, service_type: str) -> AsyncIterator[list[JSONObject]]:
        """The type's instances now, then again after each change, until close."""
        entry = self._entries.get(service_type) or self._watch(_Entry(service_type))
        seen = -1
        while not self._closed:
            if entry.has_data and entry.generation != seen:
                seen = entry.generation
                yield copy.deepcopy(entry.instances)
                continue
            await entry.changed.wait()

    def apply_local(self, instance: JSONObject) -> None:
        """Read-your-writes: show our own successful write before the long-poll does."""
        entry = self._entries.get(str(instance.get("service_type", "")))
        if entry is None or not entry.has_data:
            return
        key = _key(instance.get("instance_id", ""))
        others = [i for i in entry.instances if _key(i.get("instance_id", "")) != key]
        self._replace(entry, [*others, instance])

    def forget_local(self, service_type: str, instance_id: InstanceId) -> None:
        entry = self._entries.get(service_type)
        if entry is None or not entry.has_data:
            return
        key = _key(instance_id)
        self._replace(entry, [i for i in entry.instances if _key(i.get("instance_id", "")) != key])

    async def aclose(self) -> None:
        self._closed = True
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for entry in self._entries.values():
            entry.changed.set()  # ends every changes() iterator

    # -- fetching ----------------------------------------------------------------

    async def _first_fetch(self, service_type: str) -> list[JSONObject]:
        entry = self._entries[service_type] = _Entry(service_type)
        try:
            await self._fetch(entry, blocking=False)
        except RequestError:
            # A name the server refuses is not worth a watcher.
            if self._entries.get(service_type) is entry:
                del self._entries[service_type]
            raise
        finally:
            if service_type in self._entries:
                self._watch(entry)
        return entry.instances

    def _watch(self, entry: _Entry) -> _Entry:
        self._entries.setdefault(entry.service_type, entry)
        if entry.task is None and not self._closed:
            name = f"jarvis-dns watch {entry.service_type}"
            entry.task = asyncio.create_task(self._poll_loop(entry), name=name)
        return entry

    async def _poll_loop(self, entry: _Entry) -> None:
        failures = 0
        while True:
            # After an outage or a switch of server, the old index means nothing there.
            blocking = entry.healthy and entry.url == self._transport.preferred_url()
            before, started = entry.index, self._clock()
            try:
                await self._fetch(entry, blocking=blocking)
            except (RegistryUnavailable, RequestError, ValueError) as exc:
                if not isinstance(exc, RegistryUnavailable):
                    log.warning("registry refused to list %s: %s", entry.service_type, exc)
                entry.healthy = False
                await self._sleep(self._backoff.delay(failures))
                failures += 1
                continue
            failures = 0
            returned_early = self._clock() - started < self._wait_s / 2
            if not blocking and not (
                entry.healthy and entry.url == self._transport.preferred_url()
            ):
                # A plain fetch that still cannot turn into a blocking one must not spin.
                await self._sleep(_MIN_POLL_S)
            elif blocking and entry.index == before and returned_early:
                await self._sleep(_MIN_POLL_S)

    async def _fetch(self, entry: _Entry, *, blocking: bool) -> None:
        params, timeout = None, None
        if blocking:
            params = {"index": str(entry.index), "wait": _wait_param(self._wait_s)}
            timeout = self._wait_s + _POLL_SLACK_S
        path = f"/v1/services/{entry.service_type}"
        response = await self._transport.request("GET", path, params=params, timeout_s=timeout)
        url = self._transport.server_of(response)
        header = response.headers.get("X-Jarvis-Index")
        if response.status_code == 404:
            self._store(entry, [], int(header) if header and header.isdigit() else 0, url)
            return
        if response.status_code >= 400:
            raise request_error(response)
        body = json_body(response)
        instances, index = _parse_list(body, header, url)
        self._store(entry, instances, index, url)

    def _store(self, entry: _Entry, instances: list[JSONObject], index: int, url: str) -> None:
        # The server's answer always wins, even with a lower index: its store was reset.
        if entry.stale_logged:
            log.info("instances of %s are fresh again", entry.service_type)
        entry.index, entry.url, entry.fetched_at = index, url, self._clock()
        entry.healthy, entry.stale_logged = True, False
        if not entry.has_data or instances != entry.instances:
            entry.has_data = True
            self._replace(entry, instances)

    def _replace(self, entry: _Entry, instances: list[JSONObject]) -> None:
        entry.instances = instances
        entry.generation += 1
        old, entry.changed = entry.changed, asyncio.Event()
        old.set()

    def _stale(self, entry: _Entry) -> list[JSONObject]:
        age = self._clock() - entry.fetched_at
        if not entry.has_data or age > self._max_stale_s:
            raise RegistryUnavailable(
                f"registry unreachable and no list of {entry.service_type} "
                f"younger than {self._max_stale_s:g}s"
            )
        if not entry.stale_logged:
            log.warning(
                "registry unreachable: answering %s from the list of %.1fs ago",
                entry.service_type,
                age,
            )
            entry.stale_logged = True
        return entry.instances


def _parse_list(body: object, header: str | None, url: str) -> tuple[list[JSONObject], int]:
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise BadResponse(f"{url} answered a service list without 'instances'")
    instances = [i for i in body["instances"] if isinstance(i, dict)]
    raw = header if header is not None else body.get("index", 0)
    try:
        return instances, int(raw)
    except (TypeError, ValueError) as exc:
        raise BadResponse(f"{url} answered a bad change index {raw!r}") from exc
