"""HTTP API v1: register, heartbeat, status, discover, list, watch, events."""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from pathlib import PurePath
from typing import Any

from aiohttp import web

from jarvis_dns import acl, jsontext, matching, validate
from jarvis_dns.acl import Policy
from jarvis_dns.dns import lookup
from jarvis_dns.errors import NotFound, Unprocessable, ValidationError, ZoneError
from jarvis_dns.http import limits
from jarvis_dns.http.blocking import ALL, parse_index, parse_wait
from jarvis_dns.http.common import (
    Context,
    add_guarded,
    context,
    json_response,
    json_text_response,
    may_manage,
    may_read,
    may_write,
    parse_json,
    read_body,
    read_json,
    reader,
    shown,
)
from jarvis_dns.metrics import exposition
from jarvis_dns.models import Instance, InstanceId, InstanceSpec, JSONObject, Status
from jarvis_dns.registry import View

# What the write routes answer with: status code, JSON text, X-Jarvis-Index.
Answer = tuple[int, str, int]
HEARTBEAT_FIELDS = frozenset({"busy", "metrics"})
STATUS_FIELDS = frozenset({"busy", "status"})
DISCOVER_FIELDS = frozenset({"service_type", "requirements", "strategy", "key"})
_STARTED = time.time()
MAX_TXT_SHOWN = 20  # instances whose TXT record GET /v1/services/{svc}/dns asks
log = logging.getLogger("jarvis_dns.http")


def _ids(request: web.Request) -> tuple[str, InstanceId]:
    info = request.match_info
    return validate.service_type(info["svc"]), validate.instance_id(info["id"])


async def _block(request: web.Request, key: str) -> None:
    """Honour ?index=N&wait=: return when the relevant index passes N."""
    index = parse_index(request.query.get("index"))
    wait = parse_wait(request.query.get("wait"))
    if index is None or (index == 0 and "wait" not in request.query):
        return  # index=0 without wait: nothing seen yet and no wait asked, answer now
    ctx = context(request)
    view = ctx.view
    current = (lambda: view.index) if key == ALL else (lambda: view.service_index(key))
    await ctx.waiter.wait(key, current, index, wait)
    if ctx.waiter.closed:
        # Shutting down: say so (503) rather than answer "nothing changed", so a watcher
        # turns to another server or backs off at once.
        raise web.HTTPServiceUnavailable(reason="Shutting Down")


async def register(request: web.Request) -> web.Response:
    spec = validate.register_body(await read_json(request), request.remote)
    may_write(request, spec.service_type)
    status, text, index = await registered(context(request), spec)
    return json_text_response(text, status=status, index=index)


async def registered(ctx: Context, spec: InstanceSpec) -> Answer:
    """Admit and register: 201 for a new instance, 200 for an update; its JSON, index."""
    admit(ctx, spec)
    inst, created = await ctx.changes.register(spec)
    return register_answer(inst, created)


def admit(ctx: Context, spec: InstanceSpec) -> None:
    """A registration within the limits (a 4xx error otherwise)."""
    limits.admit_check(ctx.config, spec)
    limits.admit_instance(ctx.view, ctx.config, spec)


def register_answer(inst: Instance, created: bool) -> Answer:
    return 201 if created else 200, inst.to_json(), inst.modify_index


async def list_services(request: web.Request) -> web.Response:
    policy = reader(request)
    await _block(request, ALL)
    view = context(request).view
    services = {svc: view.tally(svc) for svc in view.service_types() if policy.can_read(svc)}
    return json_response({"services": services, "index": view.index}, index=view.index)


def _filters(request: web.Request) -> matching.Predicate:
    query = request.query
    requirements: JSONObject = {}
    if "requirements" in query:
        try:
            requirements = jsontext.decode(query["requirements"])
        except (ValueError, RecursionError):
            raise ValidationError("must be JSON", field="requirements") from None
        requirements = validate.require_object(requirements, "requirements")
    if "status" in query:
        requirements["status"] = validate.status(query["status"]).value
    if "busy" in query:
        if query["busy"] not in ("true", "false"):
            raise ValidationError("must be true or false", field="busy")
        requirements["busy"] = query["busy"] == "true"
    return matching.compile_requirements(requirements)


async def get_service(request: web.Request) -> web.Response:
    svc = validate.service_type(request.match_info["svc"])
    policy = may_read(request, svc)
    predicate = _filters(request)
    await _block(request, svc)
    ctx = context(request)
    index = ctx.view.service_index(svc)
    found = ctx.discovery.listing(svc, predicate)
    # Spliced from each instance's kept JSON: a large service lists without re-encoding.
    head = json.dumps({"service_type": svc, "index": index}, separators=(",", ":"))[:-1]
    text = head + ',"instances":[' + ",".join(shown(i, policy) for i in found) + "]}"
    return json_text_response(text, index=index)


async def service_dns(request: web.Request) -> web.Response:
    """What the DNS face answers for one service, as dig prints it: SRV and A of the
    service, TXT of each live instance (the first MAX_TXT_SHOWN). Asked of the DNS face
    itself, so it is what a client gets (and is counted as DNS queries over TCP)."""
    svc = validate.service_type(request.match_info["svc"])
    may_read(request, svc)
    ctx = context(request)
    live = [i.key for i in ctx.discovery.listing(svc, lambda i: i.live)][:MAX_TXT_SHOWN]
    asked = lookup.service_questions(svc, ctx.config.zone, live)
    answers = [lookup.presented(q, ctx.hooks.dns_answer(bytes(q.pack()))) for q in asked]
    body = {"service_type": svc, "index": ctx.view.service_index(svc), "answers": answers}
    return json_response(body, index=ctx.view.service_index(svc))


async def get_instance(request: web.Request) -> web.Response:
    svc, iid = _ids(request)
    policy = may_read(request, svc)
    inst = context(request).view.get(svc, iid)
    return json_text_response(shown(inst, policy), index=inst.modify_index)


async def deregister(request: web.Request) -> web.Response:
    svc, iid = _ids(request)
    may_write(request, svc)
    ctx = context(request)
    inst = await ctx.changes.deregister(svc, iid)
    return json_text_response(inst.to_json(), index=ctx.view.index)


async def heartbeat(request: web.Request) -> web.Response:
    """The hottest route (every instance, every 10 s): kept lean on purpose; the fast
    lane (lane.py) answers most beats below aiohttp with the same pieces."""
    raw = await read_body(request)
    busy, metrics = heartbeat_fields(raw, parse_json(request, raw, optional=True))
    ctx = context(request)
    info = request.match_info
    svc, iid = heartbeat_ids(ctx.view, info["svc"], info["id"])
    may_write(request, svc)
    _, text, index = await beaten(ctx, svc, iid, busy, metrics)
    return json_text_response(text, index=index)


async def beaten(
    ctx: Context, svc: str, iid: InstanceId, busy: bool | None, metrics: JSONObject | None
) -> Answer:
    inst = await ctx.changes.heartbeat(svc, iid, busy=busy, metrics=metrics)
    return 200, beat_text(inst), inst.modify_index


def heartbeat_fields(raw: bytes, body: Any) -> tuple[bool | None, JSONObject | None]:
    """A heartbeat body's busy and metrics (each None when not sent)."""
    body = validate.require_object(body)
    if body.keys() - HEARTBEAT_FIELDS:
        validate.only_fields(body, HEARTBEAT_FIELDS)
    return validate.optional_busy(body), validate.optional_metrics(body, len(raw))


def heartbeat_ids(view: View, svc: str, iid: str) -> tuple[str, InstanceId]:
    """A name the registry holds as sent is valid by construction: one lookup, no
    regex; anything else is validated (400) before it can be a 404."""
    if view.find(svc, iid) is not None:
        return svc, iid
    return validate.service_type(svc), validate.instance_id(iid)


def beat_text(inst: Instance) -> str:
    """A heartbeat's answer, formatted by hand: three scalars need no JSON encoder."""
    return (
        f'{{"status":"{inst.status.value}","busy":{"true" if inst.busy else "false"},'
        f'"ttl_s":{inst.ttl_s!r}}}'
    )


async def set_status(request: web.Request) -> web.Response:
    svc, iid = _ids(request)
    may_write(request, svc)
    busy, status = status_fields(await read_json(request))
    _, text, index = await flipped(context(request), svc, iid, busy, status)
    return json_text_response(text, index=index)


async def flipped(
    ctx: Context, svc: str, iid: InstanceId, busy: bool | None, status: Status | None
) -> Answer:
    inst = await ctx.changes.set_status(svc, iid, status=status, busy=busy)
    return 200, inst.to_json(), inst.modify_index


def status_fields(body: Any) -> tuple[bool | None, Status | None]:
    """A status body's busy and status; at least one of them."""
    body = validate.require_object(body)
    validate.only_fields(body, STATUS_FIELDS)
    busy, status = validate.optional_busy(body), validate.optional_status(body)
    if busy is None and status is None:
        raise ValidationError("give busy or status", field="status")
    return busy, status


def parse_discover(body: Any) -> tuple[str, str, matching.Predicate, str, str | None]:
    body = validate.require_object(body)
    validate.only_fields(body, DISCOVER_FIELDS)
    if "service_type" not in body:
        raise ValidationError("is required", field="service_type")
    svc = validate.service_type(body["service_type"])
    cache_key, predicate = matching.compile_cached(body.get("requirements"))
    key = body.get("key")
    if key is not None and not isinstance(key, str | int):
        raise ValidationError("must be a string", field="key")
    key = None if key is None else str(key)
    return svc, cache_key, predicate, matching.check_strategy(body.get("strategy"), key), key


async def discover(request: web.Request) -> web.Response:
    asked = parse_discover(await read_json(request))
    text, index = discovered(context(request), asked, may_read(request, asked[0]))
    return json_text_response(text, index=index)


def discovered(
    ctx: Context,
    asked: tuple[str, str, matching.Predicate, str, str | None],
    policy: Policy = acl.EVERYTHING,
) -> tuple[str, int]:
    """The picked instance's JSON as this reader may see it, and the service's index."""
    svc, cache_key, predicate, strategy, key = asked
    inst = ctx.discovery.discover(svc, predicate, strategy, key, cache_key)
    if inst is None:
        raise NotFound(f"no live instance of {svc} matches", field="service_type")
    return shown(inst, policy), ctx.view.service_index(svc)


async def events(request: web.Request) -> web.Response:
    since = parse_index(request.query.get("since"), "since") or 0
    limit = parse_index(request.query.get("limit"), "limit")
    policy = reader(request)
    await _block(request, ALL)
    ctx = context(request)
    index = ctx.view.index
    found = ctx.events.since(since, limit)
    body = {
        "index": index,
        "oldest_index": ctx.events.oldest_index(index),
        "events": [e.to_dict() for e in found if policy.can_read(e.service_type)],
    }
    return json_response(body, index=index)


async def health(request: web.Request) -> web.Response:
    ctx = context(request)
    view = ctx.view
    store = ctx.hooks.store_status()
    body = {
        # degraded: the store is out of reach; this node answers from its last view and
        # refuses writes (503) until it is back
        "status": "ok" if store.get("state") == "ok" else "degraded",
        "index": view.index,
        "instances": view.count(),
        "services": len(view.service_types()),
        "uptime_s": round(time.time() - _STARTED, 3),
        "domain": ctx.config.zone,
        "monitor": ctx.hooks.health_status(),
        "dns": ctx.hooks.dns_stats(),
        "store": store,
        "cluster": ctx.hooks.cluster_status(),
    }
    return json_response(body, index=view.index)


async def clear_self_preservation(request: web.Request) -> web.Response:
    may_manage(request)
    ctx = context(request)
    await ctx.hooks.clear_self_preservation()
    return json_response({"monitor": ctx.hooks.health_status()})


async def reload_zones(request: web.Request) -> web.Response:
    may_manage(request)
    try:
        zones = context(request).hooks.reload_zones()
    except ZoneError as exc:
        # The full reason (absolute path, the offending text) goes to the log only.
        log.error("zone reload failed, keeping the old data: %s", exc)
        where = f"{PurePath(exc.path).name}:{exc.line}: " if exc.path else ""
        message = f"{where}the zone file does not parse (the server log has why)"
        raise Unprocessable(message, field="zones", code="zone_error") from None
    return json_response({"zones": zones})


async def metrics(request: web.Request) -> web.Response:
    """The registry's own figures in the Prometheus text format. Who may read them:
    anyone without --acl; with it, a token (or the anonymous policy) that reads some
    service, and series labelled with a service only for the services it may read."""
    policy = reader(request)
    body = exposition.render(context(request).metrics, policy.can_read)
    return web.Response(body=body, headers={"Content-Type": exposition.CONTENT_TYPE})


def openapi_text() -> str:
    return resources.files("jarvis_dns.http").joinpath("openapi.json").read_text()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=openapi_text(), content_type="application/json")


INSTANCE = "/v1/services/{svc}/instances/{id}"
HEARTBEAT = INSTANCE + "/heartbeat"
STATUS = INSTANCE + "/status"
DISCOVER = "/v1/discover"
REGISTER = "/v1/instances"


def add_routes(app: web.Application) -> None:
    instance = INSTANCE
    add_guarded(
        app,
        [
            # The router tries routes in order: the heartbeat, by far the most frequent
            # request, goes first, then the busy flip.
            ("PUT", HEARTBEAT, heartbeat),
            ("PUT", STATUS, set_status),
            ("POST", REGISTER, register),
            ("GET", "/v1/services", list_services),
            ("GET", "/v1/services/{svc}", get_service),
            ("GET", "/v1/services/{svc}/dns", service_dns),
            ("GET", instance, get_instance),
            ("DELETE", instance, deregister),
            ("POST", DISCOVER, discover),
            ("GET", "/v1/events", events),
            ("GET", "/v1/health", health),
            ("DELETE", "/v1/health/self-preservation", clear_self_preservation),
            ("POST", "/v1/zones/reload", reload_zones),
            ("GET", "/v1/openapi.json", openapi),
            ("GET", "/metrics", metrics),
        ],
    )
