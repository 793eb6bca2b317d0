"""One client's WebSocket on `beach serve`: a bounded outbox drained by its own writer task,
and the token buckets that rate-limit what it sends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..bucket import TokenBucket
from ..wire.signaling import E_BAD_MESSAGE, E_RATE_LIMITED, server_message
from .metrics import Metrics

if TYPE_CHECKING:
    from .registry import Session

log = logging.getLogger("beach.server")

OUTBOX_LIMIT = 256  # messages queued for one slow client before it is dropped
SEND_TIMEOUT = 10.0


@dataclass
class ServerLimits:
    max_peers_per_session: int = 128
    join_attempts_per_minute: int = 10  # per client address (IPv6: per /64)
    session_joins_per_minute: int | None = None  # per session; None: 6x the per-address budget
    host_attempts_per_minute: int = 30  # `host` messages (register, reclaim) per client address
    failed_reclaims_per_minute: int = 5  # reclaims with a ticket that does not verify, per address
    max_sessions_per_address: int = 64  # sessions hosted from one client address
    messages_per_second: float = 50.0  # per connection, with a burst of twice that
    # What one connection may make the server read and parse, charged before parsing: bytes
    # (relayed frames and everything else) and frames. Over it the server reads that client
    # more slowly (TCP pushes back on the sender); nothing is refused or lost.
    relay_bytes_per_second: float = 4 * 1024 * 1024
    frames_per_second: float = 1000.0
    max_connections: int = 20_000
    max_connections_per_address: int = 256  # WebSockets held from one client address
    host_grace_seconds: float = 60.0  # a host that lost its connection may reclaim its session
    heartbeat_seconds: float = 20.0


class ParseBudget:
    """Token buckets in bytes and in frames, charged before a message is parsed. A charge may
    overdraw them; `charge` returns how long to wait until the debt is paid (0 if none), and
    the caller reads nothing more from that client meanwhile. Bursts: 1 s of either rate."""

    def __init__(self, bytes_per_second: float, frames_per_second: float) -> None:
        self._bytes = TokenBucket(bytes_per_second, bytes_per_second)
        self._frames = TokenBucket(frames_per_second, frames_per_second)

    def charge(self, size: int) -> float:
        now = time.monotonic()
        return max(self._bytes.charge(size, now), self._frames.charge(1, now))


class Client:
    """One WebSocket connection with a bounded outbox drained by its own writer task."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        addr: str,
        transport: Any = None,
        metrics: Metrics | None = None,
        message_rate: float = ServerLimits.messages_per_second,
    ) -> None:
        self.ws = ws
        self.addr = addr
        self._metrics = metrics or Metrics()
        self._transport = transport
        self.session: Session | None = None
        self.peer_id: str | None = None  # set for joiners
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX_LIMIT)
        self._writer = asyncio.create_task(self._drain())
        self._messages = TokenBucket(message_rate, 2 * message_rate)  # bursts of 2x the rate
        self.refused = 0  # messages over the rate: past a flood's worth, the server hangs up
        self._dropped = False

    def allow(self) -> bool:
        """One more message within the message rate?"""
        if self._messages.take():
            return True
        self.refused += 1
        return False

    def send(self, text: str) -> None:
        if self._dropped:
            return
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            self._dropped = True  # said once; its read loop ends soon and cleans up
            log.warning("dropping client %s: outbox full", self.addr)
            # A client that does not read cannot be closed politely (the close frame would
            # queue behind everything else): cut the connection, which ends its read loop.
            self._writer.cancel()
            if self._transport is not None:
                self._transport.abort()

    def abort(self) -> None:
        """Cut the connection at once (no close handshake)."""
        if self._transport is not None:
            self._transport.abort()

    def close_after_flush(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)

    async def _drain(self) -> None:
        # A cancellation (from stop(), or send() cutting a client that does not read) is never
        # caught here: the task ends cancelled, and whoever cancelled it closes the socket.
        try:
            while True:
                text = await self._outbox.get()
                if text is None:
                    break
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the send completes (CPython gh-86296), and the writer would live
                # on after its connection.
                async with asyncio.timeout(SEND_TIMEOUT):
                    await self.ws.send_str(text)
        except (ConnectionError, TimeoutError, RuntimeError):
            pass  # gone or stuck: the read loop ends too and cleans up
        with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
            async with asyncio.timeout(SEND_TIMEOUT):
                await self.ws.close()

    async def stop_after(self, timeout: float) -> None:
        """Let the writer flush what is queued (bounded), then stop it."""
        await asyncio.wait([self._writer], timeout=timeout)
        await self.stop()

    async def stop(self) -> None:
        self._writer.cancel()
        # wait(), not `await task` under suppress(CancelledError): that would also swallow a
        # cancellation of the caller itself, which must go on.
        await asyncio.wait([self._writer])
        if self._writer.cancelled():
            # Take back the CancelledError the task keeps: its traceback holds the writer's
            # frame, so this client, so the task again. Left there, that cycle is freed only
            # by a full collection (or never, once gc.freeze() has moved it; see collector.py).
            with contextlib.suppress(asyncio.CancelledError):
                self._writer.result()
        elif self._writer.exception() is not None:
            log.debug("writer of %s failed: %r", self.addr, self._writer.exception())

    def error(self, code: str, message: str) -> None:
        if code == E_RATE_LIMITED:
            self._metrics.inc("beach_rate_limited_total")
        elif code == E_BAD_MESSAGE:
            self._metrics.inc("beach_bad_messages_total")
        self.send(server_message("error", code=code, message=message))
