"""The fast lane: heartbeats, busy flips, discovery and registration answered below
aiohttp's request object.

Every instance beats every 10 s, a JARVIS service flips busy for the requests it serves
and asks for a peer before it calls one, so these requests are most of the HTTP traffic,
and a restarted registry meets a flood of registrations. Through aiohttp each costs
about 150 us of CPU before our handler runs (request and response objects, the router,
the writer), more than the registry's own work. The connection wrapper (site.py) frames
each HTTP/1.1 request itself (``frame``) and offers it here; the lane answers it when it
is one of the four and plain (no query string or percent escapes, a JSON body or none,
no ACL in force), with api.py's own validation and answer text, the same Changes calls,
the same error JSON and the same request metrics. It declines (None) everything else,
and the request goes to aiohttp unchanged: one answer, two doors.

Who may use it: whoever may use the routes it answers; with --acl on it declines every
request, and aiohttp's routes check the token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from aiohttp.http import SERVER_SOFTWARE

from jarvis_dns import jsontext, validate
from jarvis_dns.http import api
from jarvis_dns.http.common import Context, RequestCounts, decode_body, error_answer
from jarvis_dns.models import Instance, InstanceSpec
from jarvis_dns.registry import Heartbeat, Register

# A request head longer than this without its end goes to aiohttp (which refuses it).
MAX_HEAD = 16 * 1024
_END_OF_HEAD = b"\r\n\r\n"
# Headers whose request the lane leaves to aiohttp, for good: framing it does not do.
_NOT_FRAMED = (b"transfer-encoding", b"expect", b"upgrade")
_JSON = b"application/json"
HEARTBEAT = "PUT " + api.HEARTBEAT  # the routes as the request metrics name them
STATUS = "PUT " + api.STATUS
DISCOVER = "POST " + api.DISCOVER
REGISTER = "POST " + api.REGISTER


@dataclass(slots=True)
class Head:
    """One framed request: what the lane reads of it, and where the next one starts."""

    method: bytes
    target: bytes
    headers: dict[bytes, bytes]  # names lower-cased
    body: bytes | None  # None while it is still coming
    end: int


class Unframed:
    """A request the wrapper cannot frame (chunked, Expect, HTTP/1.0, malformed, too
    long): aiohttp takes the connection from here on."""


UNFRAMED = Unframed()


def frame(buf: bytearray, max_body: int) -> Head | Unframed | None:
    """The first request in ``buf`` (its body None while that is still coming); None
    while its head is."""
    head_end = buf.find(_END_OF_HEAD)
    if head_end < 0:
        # Lines ended by a bare LF never make the end above: aiohttp's parser decides.
        return UNFRAMED if len(buf) > MAX_HEAD or b"\n\n" in buf else None
    lines = bytes(buf[:head_end]).split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[2] != b"HTTP/1.1":
        return UNFRAMED
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or not name or name != name.strip() or name in headers:
            return UNFRAMED  # odd or repeated: aiohttp's parser decides
        headers[name] = value.strip()
    if any(name in headers for name in _NOT_FRAMED):
        return UNFRAMED
    length = headers.get(b"content-length", b"0")
    if not length.isdigit() or int(length) > max_body:
        return UNFRAMED
    start = head_end + len(_END_OF_HEAD)
    end = start + int(length)
    body = bytes(buf[start:end]) if len(buf) >= end else None
    method, target, _ = request_line
    return Head(method, target, headers, body, end)


Reply = bytes | Awaitable[bytes]


class Lane:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._counted = RequestCounts(ctx.metrics)
        self._date = (0, "")

    def answer(self, head: Head, client: str) -> Reply | None:
        """The reply to a framed request from ``client`` (bytes, or to await), or None:
        aiohttp's."""
        found = _route(head)
        if found is None or head.body is None or self.ctx.acl.enabled:
            return None
        route, svc, iid = found
        began = time.perf_counter()
        try:
            if route == HEARTBEAT:
                return self._beat(began, svc, iid, head.body)
            if route == DISCOVER:
                text, index = api.discovered(self.ctx, api.parse_discover(decode_body(head.body)))
                return self._reply(route, began, 200, text, index)
            if route == REGISTER:
                spec = validate.register_body(decode_body(head.body), client or None)
                return self._register(began, spec)
            return self._finish(route, began, self._flip(svc, iid, head.body))
        except Exception as exc:
            return self._failed(route, began, exc)

    def _beat(self, began: float, svc: str, iid: str, raw: bytes) -> Reply:
        busy, metrics = api.heartbeat_fields(raw, decode_body(raw, optional=True))
        svc, key = api.heartbeat_ids(self.ctx.view, svc, iid)
        inst = self.ctx.changes.beat_now(Heartbeat(svc, key, busy, metrics))
        if inst is not None:
            return self._reply(HEARTBEAT, began, 200, api.beat_text(inst), inst.modify_index)
        return self._finish(HEARTBEAT, began, api.beaten(self.ctx, svc, key, busy, metrics))

    def _register(self, began: float, spec: InstanceSpec) -> Reply:
        """api.registered's steps without a task: the plan and the commit run here, in
        the lane's turn of the loop (site.TURN_S), not in a task's first step in the
        next pass, outside any budget, where a registration flood's DNS queries waited
        for them. The answer is made in the callback of the batch's landing."""
        ctx = self.ctx
        api.admit(ctx, spec)
        created = ctx.view.find(spec.service_type, spec.instance_id) is None
        pending = ctx.changes.submit(Register(spec))
        if not isinstance(pending, asyncio.Future):
            assert pending is not None  # a registration always leaves an instance
            return self._reply(REGISTER, began, *api.register_answer(pending, created))
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def landed(done: asyncio.Future[Instance | None]) -> None:
            if done.cancelled():
                reply.cancel()
                return
            error = done.exception()
            if error is not None:
                assert isinstance(error, Exception)  # a cancellation is the branch above
                reply.set_result(self._failed(REGISTER, began, error))
                return
            inst = done.result()
            assert inst is not None
            reply.set_result(self._reply(REGISTER, began, *api.register_answer(inst, created)))

        pending.add_done_callback(landed)
        return reply

    def _flip(self, svc: str, iid: str, raw: bytes) -> Awaitable[api.Answer]:
        svc, key = validate.service_type(svc), validate.instance_id(iid)
        busy, status = api.status_fields(decode_body(raw))
        return api.flipped(self.ctx, svc, key, busy, status)

    async def _finish(self, route: str, began: float, work: Awaitable[api.Answer]) -> bytes:
        try:
            status, text, index = await work
        except Exception as exc:
            return self._failed(route, began, exc)
        return self._reply(route, began, status, text, index)

    def _failed(self, route: str, began: float, exc: Exception) -> bytes:
        method, _, path = route.partition(" ")
        status, body = error_answer(exc, method, path)
        return self._reply(route, began, status, jsontext.encode(body), None)

    def _reply(self, route: str, began: float, status: int, text: str, index: int | None) -> bytes:
        self._counted.answered(route, status, began)
        body = text.encode()
        extra = "" if index is None else f"X-Jarvis-Index: {index}\r\n"
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n{extra}"
            f"Content-Length: {len(body)}\r\nDate: {self._now()}\r\n"
            f"Server: {SERVER_SOFTWARE}\r\n\r\n"
        )
        return head.encode() + body

    def _now(self) -> str:
        """The Date header, made once a second (as aiohttp does)."""
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, formatdate(second, usegmt=True))
        return self._date[1]


def _route(head: Head) -> tuple[str, str, str] | None:
    """(route, service, instance) of a plain heartbeat, busy flip, discover or
    registration (the last two without service and instance); None otherwise."""
    if b"%" in head.target or b"?" in head.target:
        return None
    ctype = head.headers.get(b"content-type")
    if ctype is not None and ctype != _JSON:
        return None  # aiohttp parses media types (and answers 415)
    connection = head.headers.get(b"connection")
    if connection is not None and connection.lower() != b"keep-alive":
        return None  # aiohttp closes the connection after its answer
    if head.method == b"POST":
        return _POSTS.get(head.target)
    parts = head.target.split(b"/")
    if head.method != b"PUT" or len(parts) != 7 or parts[:3] != _SERVICES:
        return None
    if parts[4] != b"instances" or not parts[3] or not parts[5]:
        return None
    try:
        svc, iid = parts[3].decode("ascii"), parts[5].decode("ascii")
    except UnicodeDecodeError:
        return None
    if parts[6] == b"heartbeat":
        return HEARTBEAT, svc, iid
    if parts[6] == b"status":
        return STATUS, svc, iid
    return None


_SERVICES = [b"", b"v1", b"services"]
_POSTS = {api.DISCOVER.encode(): (DISCOVER, "", ""), api.REGISTER.encode(): (REGISTER, "", "")}
_REASONS = {s.value: s.phrase for s in HTTPStatus}
