"""The aiohttp application: v1 and legacy routes over one context."""

from __future__ import annotations

from aiohttp import web

from jarvis_dns.http import api, legacy, tokens, ui
from jarvis_dns.http.common import CONTEXT, Context, guarded, http_error

# Bodies are capped at config.max_body_bytes by read_body; this is aiohttp's outer bound.
CLIENT_MAX_SIZE = 2**20


def make_web_app(ctx: Context) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app[CONTEXT] = ctx
    api.add_routes(app)
    legacy.add_routes(app)
    tokens.add_routes(app)
    ui.add_routes(app)
    # Last: whatever matched nothing gets a JSON 404 or 405 rather than aiohttp's text.
    app.router.add_route("*", "/{tail:.*}", guarded(unmatched, "unmatched", ctx.metrics))
    return app


async def unmatched(request: web.Request) -> web.Response:
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        response = http_error(405, "Method Not Allowed")
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    return http_error(404, "Not Found")
