"""The browser joiner's page at /j/: three files of package data (built by `make web`), read
once, on fixed routes, so nothing a request names ever reaches the filesystem.

The page runs its own script and style and nothing else (the CSP below), sends no Referer,
and lives in a window of its own: the join token is in the URL fragment, which no request
carries, and the page must not hand it, or the live terminal, to another origin.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

log = logging.getLogger("beach.server")

PREFIX = "/j/"

# Each allowance is there because Chromium needed it (checked for CSP violations there):
# - style-src 'unsafe-inline': xterm.js 6 writes its own <style> elements (theme, row sizes,
#   scrollbar) and sets style attributes on cells for true colour. Inline style cannot fetch
#   anything here (img-src and font-src default to 'none'), so it cannot leak the screen.
# - connect-src 'self': the page's WebSocket to this server (CSP3 'self' covers ws: and wss:
#   of the same host and port). WebRTC is not governed by CSP.
# Everything else is refused: no eval, no inline script, no frames, no forms, no <base>.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The page may change with any release: never kept. The assets are kept but revalidated
# (their names carry no version), which costs a 304 when nothing changed.
NO_STORE = "no-store"
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # served when the client accepts it and it is smaller
    content_type: str
    cache: str
    etag: str


FILES = {
    "index.html": ("text/html", NO_STORE),
    "beach.js": ("text/javascript", REVALIDATE),
    "beach.css": ("text/css", REVALIDATE),
}


@functools.cache
def assets() -> dict[str, Asset] | None:
    """The page's files, read once per process; None if this install has none (a broken build)."""
    static = resources.files("beach_cli") / "web" / "static"
    found: dict[str, Asset] = {}
    try:
        for name, (content_type, cache) in FILES.items():
            body = static.joinpath(name).read_bytes()
            packed = gzip.compress(body, compresslevel=9, mtime=0)
            found[name] = Asset(
                body=body,
                gzipped=packed if cache != NO_STORE and len(packed) < len(body) else None,
                content_type=content_type,
                cache=cache,
                etag=hashlib.sha256(body).hexdigest()[:32],
            )
    except OSError as exc:
        log.warning("the browser page is missing from this install (%s): /j/ answers 404", exc)
        return None
    return found


def add_routes(app: web.Application) -> None:
    """GET (and HEAD) /j/, /j/beach.js and /j/beach.css; /j redirects to /j/."""
    assets()  # read (and gzipped, ~30 ms) now rather than on the event loop at the first request
    app.router.add_get(PREFIX.rstrip("/"), _redirect)
    for name, path in (("index.html", ""), ("beach.js", "beach.js"), ("beach.css", "beach.css")):
        app.router.add_get(PREFIX + path, functools.partial(_serve, name))


async def _redirect(_request: web.Request) -> web.StreamResponse:
    # A browser keeps the fragment (the token) across a redirect whose Location has none.
    return web.Response(status=301, headers={**HEADERS, "Location": PREFIX})


async def _serve(name: str, request: web.Request) -> web.StreamResponse:
    found = assets()
    if found is None:
        raise web.HTTPNotFound(text="this beach was installed without its browser page\n")
    asset = found[name]
    headers = {**HEADERS, "Cache-Control": asset.cache}
    if asset.cache != NO_STORE:
        headers["ETag"] = f'"{asset.etag}"'
        headers["Vary"] = "Accept-Encoding"
        if any(tag.value in (asset.etag, "*") for tag in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(
        body=body, headers=headers, content_type=asset.content_type, charset="utf-8"
    )
