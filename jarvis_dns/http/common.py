"""What the v1 and legacy routes share: JSON bodies, errors, the request context."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from jarvis_dns import acl, jsontext
from jarvis_dns.acl import Acl, Policy
from jarvis_dns.changes import Changes
from jarvis_dns.config import Config
from jarvis_dns.discovery import Discovery
from jarvis_dns.errors import (
    JarvisError,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    StoreError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)
from jarvis_dns.http.blocking import IndexWaiter
from jarvis_dns.metrics import Metrics
from jarvis_dns.models import Instance
from jarvis_dns.registry import EventLog, View
from jarvis_dns.store.tokens import MemoryTokens, TokenStore

log = logging.getLogger("jarvis_dns.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The status a request is counted with when its client went away first (nginx's 499).
CLIENT_GONE = 499


@dataclass(slots=True)
class Hooks:
    """What the HTTP face may ask of the other faces; app.py fills it in."""

    health_status: Callable[[], dict[str, Any]] = dict
    dns_stats: Callable[[], dict[str, Any]] = dict
    reload_zones: Callable[[], list[str]] = list
    clear_self_preservation: Callable[[], Awaitable[None]] = lambda: _nothing()
    store_status: Callable[[], dict[str, object]] = lambda: {"backend": "memory", "state": "ok"}
    cluster_status: Callable[[], dict[str, object]] = dict
    # One DNS message in, the DNS face's reply out (as over TCP); None: no DNS face.
    dns_answer: Callable[[bytes], bytes | None] = lambda _: None
    extra: dict[str, Any] = field(default_factory=dict)


async def _nothing() -> None:
    return None


@dataclass(slots=True)
class Context:
    """What every route may use: writes through `changes`, reads from its view (through
    `discovery` for "which instances answer")."""

    changes: Changes
    discovery: Discovery
    config: Config
    waiter: IndexWaiter
    hooks: Hooks
    acl: Acl = field(default_factory=Acl)
    tokens: TokenStore = field(default_factory=MemoryTokens)
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def view(self) -> View:
        return self.changes.view

    @property
    def events(self) -> EventLog:
        return self.changes.events


CONTEXT: web.AppKey[Context] = web.AppKey("jarvis_context", Context)


def context(request: web.Request) -> Context:
    return request.app[CONTEXT]


# -- who may do what (acl.py); each route asks for what it needs ----------------


def _secret(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return request.headers.get("X-Jarvis-Token")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("send Authorization: Bearer <token>", field="Authorization")
    return value.strip()


def may_write(request: web.Request, service_type: str) -> None:
    """401/403 unless the request may register, beat, flip or remove in this service."""
    rules = context(request).acl
    if rules.enabled:
        token = rules.policy(_secret(request))
        allowed = (rules.anonymous if token is None else token).can_write(service_type)
        acl.require(token, allowed, f"write service {service_type}")


def may_read(request: web.Request, service_type: str) -> Policy:
    """401/403 unless the request may read this service; the policy it acts with."""
    rules = context(request).acl
    if not rules.enabled:
        return acl.EVERYTHING
    token = rules.policy(_secret(request))
    policy = rules.anonymous if token is None else token
    acl.require(token, policy.can_read(service_type), f"read service {service_type}")
    return policy


def reader(request: web.Request) -> Policy:
    """The policy a listing is filtered by; 401 without a token when anonymous reads
    nothing (an empty answer would hide the reason)."""
    rules = context(request).acl
    if not rules.enabled:
        return acl.EVERYTHING
    token = rules.policy(_secret(request))
    if token is None and not rules.anonymous.services:
        raise Unauthorized("a token is required", field="Authorization")
    return rules.anonymous if token is None else token


def may_manage(request: web.Request) -> None:
    rules = context(request).acl
    if rules.enabled:
        token = rules.policy(_secret(request))
        acl.require(token, token is not None and token.management, "manage the registry")


def shown(inst: Instance, policy: Policy) -> str:
    """An instance's JSON as this reader may see it: what an active check read (its
    output, and metrics, which a check may fill) only for writers of the service."""
    if policy.management or inst.check is None or policy.can_write(inst.service_type):
        return inst.to_json()
    body = {**inst.to_dict(), "check_output": "", "metrics": {}}
    return jsontext.encode(body)


def json_response(body: Any, status: int = 200, index: int | None = None) -> web.Response:
    headers = {"X-Jarvis-Index": str(index)} if index is not None else None
    text = jsontext.encode(body)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def json_text_response(text: str, status: int = 200, index: int | None = None) -> web.Response:
    """An answer already encoded (an instance's to_json())."""
    headers = {"X-Jarvis-Index": str(index)} if index is not None else None
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def error_response(exc: RequestError) -> web.Response:
    return json_response(exc.to_dict(), status=exc.status)


async def read_body(request: web.Request) -> bytes:
    """The whole body, refused (413) past config.max_body_bytes."""
    limit = context(request).config.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body is over {limit} bytes", field="body")
    try:
        if request.content.is_eof():  # came with the headers (a heartbeat): no timer
            raw = await request.read()
        else:
            async with asyncio.timeout(context(request).config.http_read_timeout_s):
                raw = await request.read()
    except TimeoutError:
        raise RequestTimeout("the body did not arrive in time", field="body") from None
    except web.HTTPRequestEntityTooLarge:  # chunked and past aiohttp's outer bound
        raise PayloadTooLarge(f"body is over {limit} bytes", field="body") from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"body is over {limit} bytes", field="body")
    return raw


async def read_json(request: web.Request, optional: bool = False) -> Any:
    """The request body as JSON, enforcing size and content type; {} when optional and empty."""
    return parse_json(request, await read_body(request), optional)


def parse_json(request: web.Request, raw: bytes, optional: bool = False) -> Any:
    if raw.strip():
        _check_content_type(request)
    return decode_body(raw, optional)


def decode_body(raw: bytes, optional: bool = False) -> Any:
    """A body's JSON; {} when optional and empty."""
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("a JSON body is required", field="body")
    try:
        return jsontext.decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"malformed JSON: {exc}", field="body") from None
    except RecursionError:
        raise ValidationError("JSON nests too deep", field="body") from None


def _check_content_type(request: web.Request) -> None:
    # A missing header is accepted (curl -d without -H); a different media type is not.
    raw = request.headers.get("Content-Type")
    if raw is None or raw == "application/json":  # the usual case, without parsing
        return
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"send application/json, not {ctype}", field="Content-Type")


class RequestCounts:
    """Each answer counted under its route, status code and time: by ``guarded`` for
    aiohttp's routes and by the fast lane (lane.py) for its own."""

    def __init__(self, metrics: Metrics) -> None:
        self._requests = metrics.counter("jarvis_http_requests_total")
        self._duration = metrics.histogram("jarvis_http_request_duration_seconds")

    def answered(self, route: str, status: int, began: float) -> None:
        self._requests.inc(route, str(status))
        self._duration.observe(time.perf_counter() - began, route)


def guarded(handler: Handler, route: str = "", metrics: Metrics | None = None) -> Handler:
    """Errors become JSON answers, and each answer is counted under ``route`` (its
    status code and time). A wrapper per route rather than an aiohttp middleware:
    middlewares cost about 10% of a heartbeat's CPU (measured), and heartbeats are most
    of the traffic."""
    counted = RequestCounts(metrics or Metrics())

    async def run(request: web.Request) -> web.StreamResponse:
        began = time.perf_counter()
        status = 500
        try:
            response = await _answered(handler, request)
            status = response.status
            return response
        except web.HTTPException as exc:  # a redirect or the like, for aiohttp to send
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_GONE
            raise
        finally:
            counted.answered(route, status, began)

    return run


async def _answered(handler: Handler, request: web.Request) -> web.StreamResponse:
    """The handler's answer, with every error as JSON (web.HTTPException < 400 raised)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error(exc.status, exc.reason)
    except Exception as exc:
        status, body = error_answer(exc, request.method, request.path)
        return json_response(body, status=status)


def error_answer(exc: Exception, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body an error is answered with (logged unless the client's)."""
    if isinstance(exc, RequestError):
        return exc.status, exc.to_dict()
    if isinstance(exc, StoreError):
        log.error("store failure on %s %s: %s", method, path, exc)
        return 503, {"error": {"code": "store_unavailable", "message": str(exc)}}
    if isinstance(exc, JarvisError):
        log.error("error on %s %s: %s", method, path, exc)
        return 500, {"error": {"code": "error", "message": str(exc)}}
    # A bug: logged with its traceback, answered as JSON, and the server lives on.
    log.error("unexpected error on %s %s", method, path, exc_info=exc)
    return 500, {"error": {"code": "internal", "message": "internal error (logged)"}}


def add_guarded(app: web.Application, routes: list[tuple[str, str, Handler]]) -> None:
    """Add (method, path, handler) routes, each wrapped by guarded() and counted as
    "METHOD path" in the context's metrics."""
    metrics = app[CONTEXT].metrics
    app.router.add_routes(
        [web.route(m, path, guarded(h, f"{m} {path}", metrics)) for m, path, h in routes]
    )


def http_error(status: int, reason: str) -> web.Response:
    code = reason.lower().replace(" ", "_")
    return json_response({"error": {"code": code, "message": reason}}, status)
