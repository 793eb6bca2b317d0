"""One raw WebSocket to `beach serve` for the server's tests: every text message received is
validated as a server message."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from beach_cli.wire.signaling import client_message, parse_server_message

T = 5.0  # seconds allowed for any single network step (a test may pass its own)
CLOSED_TYPES = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


class Conn:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, step: float = T) -> None:
        self.ws = ws
        self.step = step
        self.welcome: dict[str, Any] = {}

    async def send(self, mtype: str, **fields: Any) -> None:
        await self.send_raw(client_message(mtype, **fields))

    async def send_raw(self, text: str) -> None:
        await asyncio.wait_for(self.ws.send_str(text), self.step)

    async def send_json(self, obj: Any) -> None:
        await self.send_raw(json.dumps(obj))

    async def send_bytes(self, data: bytes) -> None:
        await asyncio.wait_for(self.ws.send_bytes(data), self.step)

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout or self.step)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text message, got {msg!r}"
        return parse_server_message(msg.data)

    async def expect(self, mtype: str, **fields: Any) -> dict[str, Any]:
        msg = await self.recv()
        assert msg["type"] == mtype, msg
        for name, value in fields.items():
            assert msg.get(name) == value, (name, msg)
        return msg

    async def expect_error(self, code: str) -> dict[str, Any]:
        msg = await self.expect("error", code=code)
        assert msg["message"], msg
        return msg

    async def expect_closed(self) -> None:
        """The server ends the connection; nothing else may arrive first."""
        msg = await asyncio.wait_for(self.ws.receive(), self.step)
        assert msg.type in CLOSED_TYPES, f"expected the server to close, got {msg!r}"

    async def heard(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds` (closing ends it early)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), left)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            out.append(parse_server_message(msg.data))
        return out

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), self.step)
