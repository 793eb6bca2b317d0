"""What every path to a peer shares, whether a WebRTC data channel (rtc.py) or the sealed relay
through the server (relay.py): frame dispatch, PING/PONG, the heartbeat that notices a silent
peer, the `lost` event, and backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .errors import ConnectTimeout, ProtocolError
from .protocol import Frame, decode_frame, encode_frame

log = logging.getLogger("beach.link")

PING_INTERVAL = 1.0
# Any frame counts as a sign of life; silence this long means the peer is gone.
PEER_TIMEOUT = 4.0
# Backpressure: stop queueing above HIGH, resume once drained below LOW.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024


class Link:
    path = "?"  # how the bytes travel, for the person watching

    def __init__(self, on_frame: Callable[[Frame, bytes], None], name: str) -> None:
        self.name = name
        self._on_frame = on_frame
        self._open = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._last_heard = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None
        self.rtt: float | None = None

    # -- to be provided by each path -------------------------------------------------------------

    def _transmit(self, frame: bytes) -> None:
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        raise NotImplementedError

    @property
    def usable(self) -> bool:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    async def wait_open(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._open.wait(), timeout)
        except TimeoutError as exc:
            raise ConnectTimeout(
                f"no peer-to-peer connection within {timeout:.0f} s "
                "(no usable network path between the two machines?)"
            ) from exc
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    def _opened(self) -> None:
        self._last_heard = time.monotonic()
        self._open.set()

    def _received(self, data: bytes | str) -> None:
        """One message from the peer."""
        self._last_heard = time.monotonic()
        try:
            kind, body = decode_frame(data)
        except ProtocolError as exc:
            log.warning("%s: dropping bad frame: %s", self.name, exc)
            return
        if kind == Frame.PING:
            self.send(encode_frame(Frame.PONG, body))
        elif kind == Frame.PONG:
            if len(body) == 8:
                self.rtt = time.monotonic() - int.from_bytes(body, "big") / 1e9
        else:
            self._on_frame(kind, body)

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False if the link is not usable. Never blocks."""
        if not self.usable or self.lost.is_set():
            return False
        try:
            self._transmit(frame)
        except Exception as exc:  # aiortc raises various errors on a dying transport
            self._mark_lost(f"send failed: {exc}")
            return False
        if self.buffered > HIGH_WATER:
            self._writable.clear()
        return True

    def _drained(self) -> None:
        self._writable.set()

    async def writable(self) -> None:
        """Wait until the link has drained below the low-water mark (or is lost)."""
        if self.buffered > HIGH_WATER and not self.lost.is_set():
            self._writable.clear()
            await self._writable.wait()

    async def _heartbeat_loop(self) -> None:
        while not self.lost.is_set():
            self.send(encode_frame(Frame.PING, time.monotonic_ns().to_bytes(8, "big")))
            try:
                await asyncio.wait_for(self.lost.wait(), PING_INTERVAL)
                return
            except TimeoutError:
                pass
            if time.monotonic() - self._last_heard > PEER_TIMEOUT:
                self._mark_lost(f"no sign of life for {PEER_TIMEOUT:.0f} s")

    def _mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            log.debug("%s: lost (%s)", self.name, reason)
            self.lost.set()
            self._writable.set()

    async def close(self) -> None:
        self._mark_lost("closed")
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self._shutdown()
