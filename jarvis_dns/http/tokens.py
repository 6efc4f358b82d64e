"""ACL token routes (management only): create, list, delete.

    POST   /v1/acl/tokens              {description, policy} -> 201 {accessor, token, ...}
    GET    /v1/acl/tokens              -> {tokens: [{accessor, description, policy}]}
    DELETE /v1/acl/tokens/{accessor}   -> 200 {accessor}

The secret is in the answer to POST and nowhere else: only its hash is kept.
"""

from __future__ import annotations

import time

from aiohttp import web

from jarvis_dns import acl, validate
from jarvis_dns.errors import Conflict, NotFound
from jarvis_dns.http.common import (
    Context,
    add_guarded,
    context,
    json_response,
    may_manage,
    read_json,
)

FIELDS = frozenset({"description", "policy"})


def _managed(request: web.Request) -> Context:
    ctx = context(request)
    if not ctx.acl.enabled:
        raise Conflict("ACLs are off: start the server with --acl", code="acl_disabled")
    may_manage(request)
    return ctx


async def create(request: web.Request) -> web.Response:
    ctx = _managed(request)
    body = validate.require_object(await read_json(request))
    validate.only_fields(body, FIELDS)
    policy = acl.parse_policy(body.get("policy", {}))
    token, secret = acl.mint(policy, body.get("description", ""), time.time())
    await ctx.tokens.put(token)
    ctx.acl.add(token)
    return json_response({**token.public(), "token": secret}, status=201)


async def listing(request: web.Request) -> web.Response:
    ctx = _managed(request)
    return json_response({"tokens": [t.public() for t in ctx.acl.tokens()]})


async def delete(request: web.Request) -> web.Response:
    ctx = _managed(request)
    accessor = request.match_info["accessor"]
    if all(t.accessor != accessor for t in ctx.acl.tokens()):
        raise NotFound(f"no token {accessor}", field="accessor")
    await ctx.tokens.delete(accessor)  # stored first: a failed write leaves it in force
    ctx.acl.remove(accessor)
    return json_response({"accessor": accessor})


def add_routes(app: web.Application) -> None:
    add_guarded(
        app,
        [
            ("POST", "/v1/acl/tokens", create),
            ("GET", "/v1/acl/tokens", listing),
            ("DELETE", "/v1/acl/tokens/{accessor}", delete),
        ],
    )
