"""Status updates for instances this client did not register (e.g. an operator tool)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jarvis_dns.client._backoff import Backoff
from jarvis_dns.client._cache import InstanceCache
from jarvis_dns.client._errors import json_object, reason
from jarvis_dns.client._transport import Transport
from jarvis_dns.client._types import Sleep
from jarvis_dns.errors import RegistryUnavailable
from jarvis_dns.models import InstanceId, JSONObject

log = logging.getLogger("jarvis_dns.client")


class StatusForwarder:
    """Sends a status; while unreachable, keeps the latest per instance and retries."""

    def __init__(
        self, transport: Transport, backoff: Backoff, sleep: Sleep, cache: InstanceCache
    ) -> None:
        self._transport = transport
        self._backoff = backoff
        self._sleep = sleep
        self._cache = cache
        self._pending: dict[tuple[str, str], JSONObject] = {}
        self._retries: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def send(
        self, service_type: str, instance_id: InstanceId, busy: bool | None, status: str | None
    ) -> bool:
        key = (service_type, str(instance_id))
        body = self._pending.pop(key, {})  # merge with a change still waiting
        body.update({k: v for k, v in (("busy", busy), ("status", status)) if v is not None})
        try:
            return await self._put(service_type, instance_id, body)
        except RegistryUnavailable:
            self._pending[key] = body
            self._ensure_retry(key, service_type, instance_id)
            log.info("registry unreachable: status of %s/%s kept", service_type, instance_id)
            return False

    async def _put(self, service_type: str, instance_id: InstanceId, body: JSONObject) -> bool:
        path = f"/v1/services/{service_type}/instances/{instance_id}/status"
        response = await self._transport.request("PUT", path, json=body)
        if not response.is_success:
            log.warning(
                "registry refused the status of %s/%s: %s",
                service_type,
                instance_id,
                reason(response),
            )
            return False
        self._cache.apply_local(json_object(response))
        return True

    def _ensure_retry(self, key: tuple[str, str], service_type: str, iid: InstanceId) -> None:
        if key not in self._retries:
            task = asyncio.create_task(self._retry(key, service_type, iid))
            self._retries[key] = task

    async def _retry(self, key: tuple[str, str], service_type: str, iid: InstanceId) -> None:
        attempt = 0
        try:
            while key in self._pending:
                await self._sleep(self._backoff.delay(attempt))
                attempt += 1
                body = self._pending.pop(key, None)
                if body is None:
                    return
                try:
                    await self._put(service_type, iid, body)
                except RegistryUnavailable:
                    self._pending.setdefault(key, body)
        finally:
            self._retries.pop(key, None)

    async def aclose(self) -> None:
        tasks = list(self._retries.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:
            log.warning("closing with %d status updates not applied", len(self._pending))
        self._pending.clear()
