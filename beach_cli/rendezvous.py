"""WebSocket client for the signaling server, used by both host and joiner."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .errors import BeachError, NotSent, ProtocolError, ServerUnreachable
from .wire.signaling import MAX_SERVER_MESSAGE_BYTES, client_message, parse_server_message

CONNECT_TIMEOUT = 10.0


def normalize_url(url: str) -> str:
    """Accept `host:port`, http(s):// or ws(s):// and return a ws(s) URL with a path."""
    text = url.strip()
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise BeachError(f"{url!r} is not a server URL (expected e.g. ws://example.com:7777)")
    return urlunsplit((scheme, parts.netloc, parts.path or "/ws", parts.query, ""))


def short_url(url: str) -> str:
    """The shortest spelling `normalize_url` maps back to `url` (for printed commands)."""
    parts = urlsplit(url)
    if parts.scheme == "ws" and parts.path == "/ws" and not parts.query:
        return parts.netloc
    return url


class SignalingClient:
    """One WebSocket to `beach serve`. Messages are validated on the way in and out."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.welcome: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        servers = self.welcome.get("ice_servers", [])
        return [s for s in servers if isinstance(s, dict)]

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await asyncio.wait_for(
                self._http.ws_connect(
                    self.url, heartbeat=20.0, max_msg_size=MAX_SERVER_MESSAGE_BYTES
                ),
                timeout,
            )
            self.welcome = await self.recv(timeout)
        except TimeoutError as exc:
            await self.close()
            raise ServerUnreachable(f"the server at {self.url} did not answer in time") from exc
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            raise ServerUnreachable(f"{self.url} is not a beach server ({exc.status})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            await self.close()
            reason = getattr(exc, "os_error", None) or exc
            raise ServerUnreachable(f"cannot reach the server at {self.url}: {reason}") from exc
        except BeachError:
            await self.close()
            raise
        if self.welcome.get("type") != "welcome":
            await self.close()
            raise ProtocolError("the server did not greet us; is it a beach server?")

    async def send(self, mtype: str, **fields: Any) -> None:
        if self._ws is None or self._ws.closed:
            raise NotSent("the connection to the server is closed")
        try:
            await asyncio.wait_for(self._ws.send_str(client_message(mtype, **fields)), 10.0)
        except (ConnectionError, aiohttp.ClientError, TimeoutError) as exc:
            raise ServerUnreachable(f"lost the connection to the server: {exc}") from exc

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """Next valid message; raises ServerUnreachable when the connection ends."""
        assert self._ws is not None
        while True:
            try:
                msg = await asyncio.wait_for(self._ws.receive(), timeout)
            except (ConnectionError, aiohttp.ClientError) as exc:
                raise ServerUnreachable(f"lost the connection to the server: {exc}") from exc
            if msg.type == aiohttp.WSMsgType.TEXT:
                return parse_server_message(msg.data)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                raise ServerUnreachable("the server closed the connection")
            # binary or anything else is not part of the protocol; ignore it

    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._ws is not None:
                await asyncio.wait_for(self._ws.close(), 2.0)
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()
        self._ws = None
        self._http = None
