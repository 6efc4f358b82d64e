"""The web dashboard at /ui/: the package's own files (jarvis_dns/ui/), no CDN, no build.

Who may use it: anyone who reaches the HTTP port may load the files, which hold no data;
every figure the page shows comes from the v1 API, asked with the token typed into the
page (kept in the tab's sessionStorage), so ACLs apply to it as to any client.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from jarvis_dns.http.common import add_guarded, http_error

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
}
# The page loads nothing but its own files and talks only to this server.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}


def _files() -> dict[str, str]:
    """name -> content type of every file the dashboard has."""
    folder = resources.files("jarvis_dns").joinpath("ui")
    found = {}
    for item in folder.iterdir():
        kind = _TYPES.get(item.name[item.name.rfind(".") :])
        if kind is not None:
            found[item.name] = kind
    return found


FILES = _files()


async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    kind = FILES.get(name)
    if kind is None:
        return http_error(404, "Not Found")
    body = resources.files("jarvis_dns").joinpath("ui", name).read_bytes()
    return web.Response(body=body, content_type=kind, charset="utf-8", headers=_HEADERS)


async def to_slash(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/ui/")


def add_routes(app: web.Application) -> None:
    add_guarded(
        app,
        [
            ("GET", "/ui", to_slash),
            ("GET", "/ui/", page),
            ("GET", "/ui/{name}", page),
        ],
    )
