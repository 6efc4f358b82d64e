"""DNSClient: register, heartbeat, report status and discover, as JARVIS services did."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

import httpx

from jarvis_dns.client import _config
from jarvis_dns.client._backoff import Backoff
from jarvis_dns.client._cache import InstanceCache
from jarvis_dns.client._config import ServiceConfig
from jarvis_dns.client._errors import reason
from jarvis_dns.client._health import HealthProbe, health_url
from jarvis_dns.client._keeper import Keeper, KeeperSettings, Registration
from jarvis_dns.client._metrics import default_metrics
from jarvis_dns.client._status import StatusForwarder
from jarvis_dns.client._transport import Cert, Transport, Verify
from jarvis_dns.client._types import Clock, MetricsProvider, Sleep
from jarvis_dns.errors import RegistryUnavailable
from jarvis_dns.matching import Selector, check_strategy, compile_requirements
from jarvis_dns.models import InstanceId, JSONObject, Status

log = logging.getLogger("jarvis_dns.client")

# Clients heartbeat every 10 s against the default 30 s TTL: two beats may be lost.
DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
# The old JARVIS client probed its own /health every minute.
DEFAULT_HEALTH_CHECK_INTERVAL_S = 60.0
# Five tries over roughly 4-8 s ride out a registry that starts alongside the service.
DEFAULT_REGISTER_ATTEMPTS = 5
# Five minutes of stale answers outlast a registry restart but not a redeploy of callees.
DEFAULT_MAX_STALE_S = 300.0
# One long-poll per watched type; 30 s is Consul's habit, well under proxy idle limits.
DEFAULT_WATCH_WAIT_S = 30.0
_STATUSES = tuple(s.value for s in Status)
_Key = tuple[str, str]


class DNSClient:
    """A jarvis-dns client for Python services.

    `dns_url` is one URL or several in failover order (default: DNS_SERVER_URL, whose
    commas separate several, else http://127.0.0.1:9000). `base_port` (default
    BASE_PORT, else 5000) gives a ServiceConfig without a port `base_port + instance_id`.
    `host` (default HOST) is the address advertised for registered services; without
    one the server takes the address the registration came from. `token` (default
    JARVIS_DNS_TOKEN) is an ACL token, sent as `Authorization: Bearer`. `verify` (a CA
    bundle path, an ssl.SSLContext, or a bool) and `cert` (a PEM path, or (cert, key))
    are for an https:// registry and mutual TLS. `request_timeout_s` bounds each whole
    request (connect, headers and body); answers over 1 MiB are refused. `transport`,
    `clock`, `sleep` and `rng` are test seams.

    Errors: RegistryUnavailable when no server answered in time; its subclass
    BadResponse (and ResponseTooLarge) when a server answered what the API never says;
    RequestError subclasses for a refusal (4xx). All are RegistryError or RequestError.
    """

    def __init__(
        self,
        dns_url: str | Sequence[str] | None = None,
        base_port: int | None = None,
        *,
        host: str | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        metrics_provider: MetricsProvider | None = None,
        register_attempts: int = DEFAULT_REGISTER_ATTEMPTS,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 10.0,
        request_timeout_s: float = 5.0,
        breaker_threshold: int = 3,
        breaker_reset_s: float = 5.0,
        watch_wait_s: float = DEFAULT_WATCH_WAIT_S,
        max_stale_s: float = DEFAULT_MAX_STALE_S,
        health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL_S,
        health_check_timeout_s: float = 5.0,
        health_failures_before_dead: int = 3,
        token: str | None = None,
        verify: Verify = True,
        cert: Cert = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if register_attempts < 1 or heartbeat_interval <= 0 or watch_wait_s <= 0:
            raise ValueError("register_attempts, heartbeat_interval and watch_wait_s must be > 0")
        self.base_port = _config.base_port(base_port)
        self.host = _config.advertised_host(host)
        self._heartbeat_interval = heartbeat_interval
        self._register_attempts = register_attempts
        self._health_interval = health_check_interval
        self._health_timeout = health_check_timeout_s
        self._sleep = sleep
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng=rng or random.Random())
        self._transport = Transport(
            _config.server_urls(dns_url),
            transport=transport,
            timeout_s=request_timeout_s,
            breaker_threshold=breaker_threshold,
            breaker_reset_s=breaker_reset_s,
            clock=clock,
            token=token if token is not None else os.environ.get("JARVIS_DNS_TOKEN"),
            verify=verify,
            cert=cert,
        )
        self._cache = InstanceCache(
            self._transport,
            wait_s=watch_wait_s,
            max_stale_s=max_stale_s,
            backoff=self._backoff,
            clock=clock,
            sleep=sleep,
        )
        self._forwarder = StatusForwarder(self._transport, self._backoff, sleep, self._cache)
        self._settings = KeeperSettings(
            interval_s=heartbeat_interval,
            backoff=self._backoff,
            metrics=metrics_provider or default_metrics,
            sleep=sleep,
            failures_before_dead=health_failures_before_dead,
            on_instance=self._cache.apply_local,
            on_gone=self._cache.forget_local,
        )
        self._selector = Selector(rng)
        self._keepers: dict[_Key, Keeper] = {}
        self._closed = False
        self._closed_event = asyncio.Event()

    @property
    def urls(self) -> list[str]:
        """The registry URLs, in failover order."""
        return self._transport.urls

    async def __aenter__(self) -> DNSClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- registration ---------------------------------------------------------------

    async def register_service(self, config: ServiceConfig) -> bool:
        """Register and keep heartbeating; True on success, False when refused (4xx).

        Retries with exponential backoff and jitter while no server answers, then
        raises RegistryUnavailable (a ConnectionError).
        """
        self._check_open()
        reg = Registration(config.registration_body(self.base_port, self.host), config.busy)
        self._warn_if_ttl_too_short(config)
        keeper = Keeper(reg, self._transport, self._settings)
        response = await self._register_with_retry(keeper)
        if not response.is_success:
            log.error("registry refused to register %s: %s", reg.name, reason(response))
            return False
        await self._adopt(keeper, config)
        log.info("registered %s on port %s", reg.name, reg.body["port"])
        return True

    async def deregister_service(self, service_type: str, instance_id: InstanceId) -> bool:
        """Stop heartbeating one instance and remove it; True when the server has it no more."""
        key = _key(service_type, instance_id)
        keeper = self._keepers.pop(key, None)
        if keeper is None:
            body = {"service_type": service_type.lower(), "instance_id": instance_id}
            keeper = Keeper(Registration(body, False), self._transport, self._settings)
        await keeper.stop()
        return await keeper.deregister()

    async def _register_with_retry(self, keeper: Keeper) -> httpx.Response:
        last: RegistryUnavailable | None = None
        for attempt in range(self._register_attempts):
            if attempt:
                await self._sleep(self._backoff.delay(attempt - 1))
            try:
                # force: the backoff already spaces these out, and a registry that comes
                # up between two attempts must not be missed behind an open breaker.
                return await keeper.register(force=True)
            except RegistryUnavailable as exc:
                last = exc
        raise RegistryUnavailable(
            f"could not register {keeper.reg.name} after {self._register_attempts} attempts: {last}"
        ) from last

    async def _adopt(self, keeper: Keeper, config: ServiceConfig) -> None:
        key = _key(keeper.reg.service_type, keeper.reg.instance_id)
        old = self._keepers.pop(key, None)
        if old is not None:
            await old.stop()  # registering again replaces the old settings and tasks
        self._keepers[key] = keeper
        keeper.start(self._probe(keeper, config))

    def _probe(self, keeper: Keeper, config: ServiceConfig) -> HealthProbe | None:
        if not config.health_path:
            return None
        return HealthProbe(
            url=health_url(
                config.host or self.host, int(keeper.reg.body["port"]), config.health_path
            ),
            http=self._transport.http,
            interval_s=self._health_interval,
            timeout_s=self._health_timeout,
            sleep=self._sleep,
            report=keeper.on_health,
        )

    def _warn_if_ttl_too_short(self, config: ServiceConfig) -> None:
        if config.ttl_s is not None and config.ttl_s <= self._heartbeat_interval:
            log.warning(
                "%s/%s: ttl_s %s is not above heartbeat_interval %s; it will flap to dead",
                config.service_type,
                config.instance_id,
                config.ttl_s,
                self._heartbeat_interval,
            )

    # -- status ----------------------------------------------------------------------

    async def update_status(
        self,
        busy: bool | None = None,
        status: str | None = None,
        service_type: str | None = None,
        instance_id: InstanceId | None = None,
    ) -> bool:
        """Report busy and/or status (active, dead, maintenance); True when applied now.

        Applies to every service this client registered, or to the ones named. While
        the registry is unreachable the change is kept and sent on reconnect (then
        this returns False); it never raises for an outage.
        """
        if status is not None and status not in _STATUSES:
            raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        if busy is None and status is None:
            raise ValueError("give busy or status")
        self._check_open()
        keepers = self._matching_keepers(service_type, instance_id)
        if keepers:
            results = [await k.update(busy, status) for k in keepers]
            return all(results)
        if service_type is not None and instance_id is not None:
            return await self._forwarder.send(service_type.lower(), instance_id, busy, status)
        log.warning("update_status: this client has registered no matching service")
        return False

    def _matching_keepers(
        self, service_type: str | None, instance_id: InstanceId | None
    ) -> list[Keeper]:
        wanted_type = service_type.lower() if service_type is not None else None
        wanted_id = str(instance_id) if instance_id is not None else None
        return [
            keeper
            for (svc, iid), keeper in self._keepers.items()
            if wanted_type in (None, svc) and wanted_id in (None, iid)
        ]

    # -- discovery -------------------------------------------------------------------

    async def discover_service(
        self,
        service_type: str,
        requirements: JSONObject | None = None,
        strategy: str | None = None,
        key: str | None = None,
    ) -> JSONObject | None:
        """One live instance meeting the requirements, chosen by the strategy, or None.

        Answers from a cache kept fresh by blocking queries; while the registry is
        unreachable, from the last known list (up to max_stale_s old).
        """
        name = check_strategy(strategy, key)
        # least_loaded needs current metrics, which only a direct read returns.
        candidates = await self._live(service_type, requirements, fresh=name == "least_loaded")
        chosen = self._selector.select(name, candidates, key)
        return copy.deepcopy(dict(chosen)) if chosen is not None else None

    async def discover_all(
        self, service_type: str, requirements: JSONObject | None = None
    ) -> list[JSONObject]:
        """Every live instance meeting the requirements, oldest registration first."""
        return copy.deepcopy(await self._live(service_type, requirements))

    def watch(self, service_type: str) -> AsyncIterator[list[JSONObject]]:
        """All instances of the type (any status) now, then after every change."""
        self._check_open()
        return self._cache.changes(service_type.lower())

    async def _live(
        self, service_type: str, requirements: JSONObject | None, fresh: bool = False
    ) -> list[JSONObject]:
        self._check_open()
        predicate = compile_requirements(requirements)
        instances = await self._cache.instances(service_type.lower(), fresh=fresh)
        return [i for i in instances if i.get("status") == Status.ACTIVE and predicate(i)]

    # -- shutdown --------------------------------------------------------------------

    async def close(self) -> None:
        """Deregister every registered service and stop all background work; idempotent."""
        if self._closed:
            await self._closed_event.wait()
            return
        self._closed = True
        try:
            keepers = list(self._keepers.values())
            self._keepers.clear()
            for keeper in keepers:
                await keeper.stop()
            await asyncio.gather(*(self._goodbye(k) for k in keepers))
            await self._forwarder.aclose()
            await self._cache.aclose()
        finally:
            await self._transport.aclose()
            self._closed_event.set()

    async def _goodbye(self, keeper: Keeper) -> None:
        try:
            await keeper.deregister(timeout_s=2.0)
        except RegistryUnavailable as exc:
            log.warning(
                "could not deregister %s (%s); the registry expires it after its TTL",
                keeper.reg.name,
                exc,
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this DNSClient is closed")


def _key(service_type: str, instance_id: InstanceId) -> _Key:
    return service_type.lower(), str(instance_id)
