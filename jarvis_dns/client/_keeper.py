"""Keeping one registration alive: heartbeats, re-registration, remembered status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from jarvis_dns.client._backoff import Backoff
from jarvis_dns.client._errors import json_object, reason
from jarvis_dns.client._health import HealthProbe
from jarvis_dns.client._metrics import collect
from jarvis_dns.client._transport import Transport
from jarvis_dns.client._types import MetricsProvider, Sleep
from jarvis_dns.errors import RegistryUnavailable
from jarvis_dns.models import InstanceId, JSONObject

log = logging.getLogger("jarvis_dns.client")

# Deregistering on the way out of a dying event loop gets one short try.
_FAREWELL_S = 1.0


@dataclass(eq=False, slots=True)
class Registration:
    """What the client wants the registry to hold for one instance.

    `version` counts local changes of busy/status and `synced` is the version the
    server is known to hold, so a change made while unreachable is sent on reconnect.
    """

    body: JSONObject
    busy: bool
    status: str | None = None
    version: int = 0
    synced: int = 0

    @property
    def service_type(self) -> str:
        return str(self.body["service_type"])

    @property
    def instance_id(self) -> InstanceId:
        value: InstanceId = self.body["instance_id"]
        return value

    @property
    def name(self) -> str:
        return f"{self.service_type}/{self.instance_id}"

    @property
    def path(self) -> str:
        return f"/v1/services/{self.service_type}/instances/{self.instance_id}"

    @property
    def dirty(self) -> bool:
        return self.synced < self.version

    def register_body(self) -> JSONObject:
        extra = {"status": self.status} if self.status is not None else {}
        return {**self.body, "busy": self.busy, **extra}


@dataclass(frozen=True, slots=True)
class KeeperSettings:
    interval_s: float
    backoff: Backoff
    metrics: MetricsProvider
    sleep: Sleep
    failures_before_dead: int
    on_instance: Callable[[JSONObject], None]
    on_gone: Callable[[str, InstanceId], None]


class Keeper:
    """Owns one Registration and the background tasks that keep it registered."""

    def __init__(self, reg: Registration, transport: Transport, settings: KeeperSettings):
        self.reg = reg
        self._transport = transport
        self._s = settings
        self._lock = asyncio.Lock()  # one write at a time, so they reach the server in order
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._refusal_logged = False
        self._probe_failures = 0
        self._probe_dead = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self, probe: HealthProbe | None = None) -> None:
        name = self.reg.name
        self._tasks.append(asyncio.create_task(self._run(), name=f"jarvis-dns heartbeat {name}"))
        if probe is not None:
            task = asyncio.create_task(probe.run(), name=f"jarvis-dns health {name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop the background tasks, without deregistering."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- writes --------------------------------------------------------------------

    async def register(self, *, force: bool = False) -> httpx.Response:
        """POST the registration once; raises RegistryUnavailable."""
        async with self._lock:
            return await self._register_locked(force=force)

    async def update(self, busy: bool | None, status: str | None) -> bool:
        """Change busy/status locally, then try to apply it; False when not applied now."""
        if busy is not None:
            self.reg.busy = busy
        if status is not None:
            self.reg.status = status
        self.reg.version += 1
        try:
            return await self.push()
        except RegistryUnavailable:
            log.info("registry unreachable: status of %s kept, sent on reconnect", self.reg.name)
            return False

    async def push(self) -> bool:
        """Send a pending busy/status change; True when the server holds it."""
        async with self._lock:
            if not self.reg.dirty:
                return True
            version = self.reg.version
            body: JSONObject = {"busy": self.reg.busy}
            if self.reg.status is not None:
                body["status"] = self.reg.status
            response = await self._transport.request("PUT", self.reg.path + "/status", json=body)
            if response.status_code == 404:
                response = await self._reregister_locked()
            self.reg.synced = max(self.reg.synced, version)  # a refusal stays a refusal
            if not response.is_success:
                log.warning(
                    "registry refused the status of %s: %s", self.reg.name, reason(response)
                )
                return False
            self._s.on_instance(json_object(response))
            log.info("status of %s applied: %s", self.reg.name, body)
            return True

    async def beat(self) -> None:
        """One heartbeat (after any pending status); raises RegistryUnavailable."""
        await self.push()
        if self.reg.status == "dead":
            return  # a heartbeat would bring a self-declared dead instance back to active
        body = {"busy": self.reg.busy, "metrics": await collect(self._s.metrics)}
        path = self.reg.path + "/heartbeat"
        response = await self._transport.request("PUT", path, json=body)
        if response.status_code == 404:
            # The server restarted with an empty store, or cleaned the instance up.
            async with self._lock:
                await self._reregister_locked()
        elif response.is_success:
            log.debug("Heartbeat sent successfully: %s", self.reg.name)
            self._refusal_logged = False
        elif not self._refusal_logged:
            log.warning("registry refused a heartbeat of %s: %s", self.reg.name, reason(response))
            self._refusal_logged = True

    async def deregister(self, timeout_s: float | None = None) -> bool:
        """DELETE the instance; True when the server no longer has it."""
        response = await self._transport.request("DELETE", self.reg.path, timeout_s=timeout_s)
        if response.is_success or response.status_code == 404:
            self._s.on_gone(self.reg.service_type, self.reg.instance_id)
            log.info("deregistered %s", self.reg.name)
            return True
        log.warning("registry refused to deregister %s: %s", self.reg.name, reason(response))
        return False

    async def _register_locked(self, *, force: bool = False) -> httpx.Response:
        version = self.reg.version
        body = self.reg.register_body()
        response = await self._transport.request("POST", "/v1/instances", json=body, force=force)
        if response.is_success:
            self.reg.synced = max(self.reg.synced, version)
            self._s.on_instance(json_object(response))
        return response

    async def _reregister_locked(self) -> httpx.Response:
        response = await self._register_locked()
        if response.is_success:
            log.info("re-registered %s (the registry did not know it)", self.reg.name)
        else:
            log.warning("registry refused to re-register %s: %s", self.reg.name, reason(response))
        return response

    # -- background ----------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                await self._s.sleep(self._delay(failures))
                try:
                    await self.beat()
                except RegistryUnavailable:
                    failures += 1  # the transport logs the outage once
                except Exception:  # an odd answer must not end this instance's heartbeats
                    log.exception("heartbeat of %s failed unexpectedly", self.reg.name)
                    failures += 1
                else:
                    failures = 0
        except asyncio.CancelledError:
            if not self._closing:
                await self._farewell()
            raise

    def _delay(self, failures: int) -> float:
        # During an outage retry sooner than the interval, backing off up to it.
        if failures == 0:
            return self._s.interval_s
        return min(self._s.interval_s, self._s.backoff.delay(failures - 1))

    async def _farewell(self) -> None:
        """The loop is shutting down without close(): deregister, best effort."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_FAREWELL_S):
                await self.deregister()

    async def on_health(self, healthy: bool, busy: bool | None) -> None:
        """A self health check result: report busy from it; dead after N failures."""
        if healthy:
            self._probe_failures = 0
            revive = self._probe_dead
            self._probe_dead = False
            new_busy = busy if busy is not None and busy != self.reg.busy else None
            log.debug("Health check passed - Service status: %s", self.reg.status or "active")
            if revive:
                log.info("health check of %s passes again: reporting active", self.reg.name)
            if revive or new_busy is not None:
                await self.update(new_busy, "active" if revive else None)
            return
        self._probe_failures += 1
        if self._probe_failures == self._s.failures_before_dead and self.reg.status in (
            None,
            "active",
        ):
            log.warning(
                "health check of %s failed %d times: reporting dead",
                self.reg.name,
                self._probe_failures,
            )
            self._probe_dead = True
            await self.update(None, "dead")
