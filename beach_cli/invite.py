"""Join links, the invitation a host shares: one thing, for a browser and for `beach join` alike.

`http://ADDR:7777/j/#<token>` opens the page the server serves at `/j/` (next to its WebSocket
at `/ws`). The token is the URL's fragment, which a browser never sends to any server. With
`--web-origin URL` (a copy of the page hosted elsewhere) the link is `URL#<token>&server=<ws
url>`, so the page knows which server to dial.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from .errors import BeachError
from .rendezvous import normalize_url

PAGE = "j/"  # the page's path, relative to the server's base


class BadLink(BeachError):
    """A link that names no server or no token."""


def _base_path(ws_path: str) -> str:
    """The server's base path: its WebSocket path without the last `ws` segment."""
    base = ws_path.rsplit("/", 1)[0] if ws_path.endswith("/ws") else ws_path.rstrip("/")
    return base + "/"


def join_link(server_url: str, token: str, web_origin: str | None = None) -> str:
    """The link for `token` on the server at `server_url` (a ws:// or wss:// URL)."""
    ws = urlsplit(normalize_url(server_url))
    if web_origin is not None:
        return f"{web_origin.split('#', 1)[0]}#{token}&server={quote(ws.geturl(), safe='')}"
    scheme = "https" if ws.scheme == "wss" else "http"
    return urlunsplit((scheme, ws.netloc, _base_path(ws.path) + PAGE, "", token))


def is_link(text: str) -> bool:
    """Whether `beach join` was given a link (or meant one: a URL), not a bare token."""
    return "://" in text


def parse_link(text: str) -> tuple[str, str]:
    """The server's WebSocket URL and the token a link carries."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.fragment:
        raise BadLink(
            f"{text.strip()[:200]!r} is not a beach link (expected http://HOST:PORT/j/#TOKEN)"
        )
    token, _, rest = parts.fragment.partition("&")
    server = dict(parse_qsl(rest)).get("server")
    if server is not None and not server.startswith(("ws://", "wss://")):
        raise BadLink(f"the link's server is not a ws:// or wss:// URL: {server[:100]!r}")
    if server is None:
        if not parts.path.endswith("/" + PAGE):
            raise BadLink(f"{text.strip()[:200]!r} is not a beach link (its path is not /{PAGE})")
        base = parts.path[: -len(PAGE)]
        scheme = "wss" if parts.scheme == "https" else "ws"
        server = urlunsplit((scheme, parts.netloc, base + "ws", "", ""))
    try:
        return normalize_url(server), token
    except BeachError:
        raise BadLink(f"the link's server is not a server URL: {server[:100]!r}") from None
