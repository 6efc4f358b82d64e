"""The original JARVIS wire format, so the old dns_client.py works unchanged.

    POST /register   {server, instance_id, port, host, metadata}            -> 200
    POST /heartbeat  {service_type, instance_id, host, port, busy, metrics}  -> 200
    POST /heartbeat/{svc}/{id}  {busy?, metrics?}                            -> 200 / 404
    POST /status     {server, instance_id, status, busy?}                    -> 200 / 404
    POST /discover   {service_type, requirements}                            -> 200 / 404
    GET  /service/{svc}                                   -> {url, instance_id, metadata}

Unlike the old server these are strict: a requirement that nothing meets is a 404.
With ACLs on, these act with the anonymous policy (the old client sends no token).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jarvis_dns import matching, validate
from jarvis_dns.errors import NotFound, ValidationError
from jarvis_dns.http import limits
from jarvis_dns.http.common import (
    add_guarded,
    context,
    json_response,
    may_read,
    may_write,
    read_json,
)
from jarvis_dns.models import Instance, InstanceSpec, JSONObject, Status

# Old clients sent busy/idle as statuses; map them onto the busy flag.
_BUSY_WORDS = {"busy": True, "idle": False, "available": False}


def legacy_view(inst: Instance) -> JSONObject:
    return {
        "service_type": inst.service_type,
        "instance_id": inst.instance_id,
        "host": inst.host,
        "port": inst.port,
        "metadata": inst.metadata,
        "status": inst.status.value,
        "busy": inst.busy,
    }


def _service_field(body: JSONObject) -> str:
    for name in ("server", "service_type"):
        if name in body:
            return validate.service_type(body[name], field=name)
    raise ValidationError("is required", field="server")


def _spec(body: JSONObject, svc: str, peer: str | None) -> InstanceSpec:
    fields: dict[str, Any] = {"service_type": svc}
    for name in ("instance_id", "port", "host", "metadata"):
        if body.get(name) is not None:
            fields[name] = body[name]
    return validate.register_body(fields, peer)


async def register(request: web.Request) -> web.Response:
    body = validate.require_object(await read_json(request))
    spec = _spec(body, _service_field(body), request.remote)
    may_write(request, spec.service_type)
    ctx = context(request)
    limits.admit_instance(ctx.view, ctx.config, spec)
    inst, _ = await ctx.changes.register(spec)
    return json_response({"status": "registered", "instance": legacy_view(inst)})


async def heartbeat(request: web.Request) -> web.Response:
    """The old client's heartbeat carried host and port: unknown instances are registered."""
    body = validate.require_object(await read_json(request))
    svc = _service_field(body)
    iid = validate.instance_id(body.get("instance_id"))
    busy, metrics = validate.optional_busy(body), validate.optional_metrics(body)
    may_write(request, svc)
    ctx = context(request)
    if ctx.view.find(svc, iid) is None:
        spec = _spec(body, svc, request.remote)
        limits.admit_instance(ctx.view, ctx.config, spec)
        await ctx.changes.register(spec)
    inst = await ctx.changes.heartbeat(svc, iid, busy=busy, metrics=metrics)
    return json_response({"status": "ok", "instance": legacy_view(inst)})


async def heartbeat_path(request: web.Request) -> web.Response:
    svc = validate.service_type(request.match_info["svc"])
    iid = validate.instance_id(request.match_info["id"])
    may_write(request, svc)
    body = validate.require_object(await read_json(request, optional=True))
    busy, metrics = validate.optional_busy(body), validate.optional_metrics(body)
    inst = await context(request).changes.heartbeat(svc, iid, busy=busy, metrics=metrics)
    return json_response({"status": "ok", "instance": legacy_view(inst)})


def _status_change(body: JSONObject) -> tuple[Status | None, bool | None]:
    busy = validate.optional_busy(body)
    raw = body.get("status")
    if isinstance(raw, str) and raw in _BUSY_WORDS:
        return None, _BUSY_WORDS[raw] if busy is None else busy
    status = None if raw is None else validate.status(raw)
    if status is None and busy is None:
        raise ValidationError("is required", field="status")
    return status, busy


async def status(request: web.Request) -> web.Response:
    body = validate.require_object(await read_json(request))
    svc = _service_field(body)
    iid = validate.instance_id(body.get("instance_id"))
    new_status, busy = _status_change(body)
    may_write(request, svc)
    changes = context(request).changes
    inst = await changes.set_status(svc, iid, new_status, busy, reason="legacy status")
    return json_response({"status": "updated", "instance": legacy_view(inst)})


async def discover(request: web.Request) -> web.Response:
    body = validate.require_object(await read_json(request))
    svc = _service_field(body)
    may_read(request, svc)
    key, predicate = matching.compile_cached(body.get("requirements"))
    discovery = context(request).discovery
    inst = discovery.discover(svc, predicate, matching.DEFAULT_STRATEGY, cache_key=key)
    if inst is None:
        raise NotFound(f"no live instance of {svc} matches", field="service_type")
    return json_response(legacy_view(inst))


async def service(request: web.Request) -> web.Response:
    svc = validate.service_type(request.match_info["svc"])
    may_read(request, svc)
    discovery = context(request).discovery
    key, idle = matching.compile_cached({"busy": False})
    inst = discovery.discover(svc, idle, matching.DEFAULT_STRATEGY, cache_key=key)
    if inst is None:
        raise NotFound(f"no idle live instance of {svc}", field="svc")
    url = f"http://{_url_host(inst.host)}:{inst.port}"
    return json_response({"url": url, "instance_id": inst.instance_id, "metadata": inst.metadata})


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def add_routes(app: web.Application) -> None:
    add_guarded(
        app,
        [
            ("POST", "/register", register),
            ("POST", "/heartbeat", heartbeat),
            ("POST", "/heartbeat/{svc}/{id}", heartbeat_path),
            ("POST", "/status", status),
            ("POST", "/discover", discover),
            ("GET", "/service/{svc}", service),
        ],
    )
