"""The reference for the HTTP benchmark: bare aiohttp handlers on uvloop that parse the
same JSON bodies and answer a small JSON object, with no registry behind them."""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    body = json.loads(await request.read() or b"{}")
    return web.json_response({"ok": True, "n": len(body)})


def main() -> None:
    app = web.Application()
    app.router.add_put("/v1/services/{svc}/instances/{id}/heartbeat", handle)
    app.router.add_post("/v1/instances", handle)
    app.router.add_post("/v1/discover", handle)
    app.router.add_get("/v1/health", handle)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
