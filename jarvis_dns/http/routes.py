"""The aiohttp application: v1 and legacy routes over one context."""

from __future__ import annotations

from aiohttp import web

from jarvis_dns.http import api, legacy
from jarvis_dns.http.common import CONTEXT, Context, error_middleware

# Bodies are capped at config.max_body_bytes by read_json; this is aiohttp's outer bound.
CLIENT_MAX_SIZE = 2**20


def make_web_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=CLIENT_MAX_SIZE)
    app[CONTEXT] = ctx
    api.add_routes(app)
    legacy.add_routes(app)
    return app
