"""The last resort when no peer-to-peer or TURN path exists: frames travel through `beach serve`
over the signaling WebSocket, each sealed with the key from the join exchange. The server sees
ciphertext of a known size and nothing else, exactly as for the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from .. import tasks
from ..errors import BeachError, ProtocolError, SecurityError
from ..keys import KeyExchange
from ..wire.frames import Frame
from .base import Link
from .chunks import STREAM_KINDS, chunked

log = logging.getLogger("beach.relay")

# Frame bytes per relayed message: sealed and base64-encoded it stays under the server's
# 64 KiB message limit.
RELAY_CHUNK = 44 * 1024


def split_frame(frame: bytes) -> list[bytes]:
    """Cut an OUTPUT or SNAPSHOT frame into relayable pieces (other kinds are small)."""
    if len(frame) <= RELAY_CHUNK or frame[0] not in STREAM_KINDS:
        return [frame]
    return list(chunked(Frame(frame[0]), frame[1:], RELAY_CHUNK))


class RelayLink(Link):
    path = "server relay"
    through_server = True

    def __init__(
        self,
        kx: KeyExchange,
        send_text: Callable[[str], Awaitable[None]],
        on_frame: Callable[[Frame, bytes], None],
        name: str,
    ) -> None:
        super().__init__(on_frame, name)
        self.kx = kx
        self._send_text = send_text
        self._queue: deque[str] = deque()
        self._queued = 0  # characters in _queue (Link caps it, as for a data channel)
        self._taken = 0  # messages handed to the server
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()  # everything queued has been handed to the server
        self.idle.set()
        self._writer = asyncio.create_task(self._write_loop())
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self._opened()

    def _transmit(self, frame: bytes) -> None:
        for piece in split_frame(frame):
            text = self.kx.seal_frame(piece)  # sealed now, so sequence numbers follow send order
            self._queue.append(text)
            self._queued += len(text)
        self.idle.clear()
        self._wake.set()

    @property
    def usable(self) -> bool:
        return not self.lost.is_set()

    @property
    def buffered(self) -> int:
        return self._queued

    def _progress(self) -> object:
        return self._taken

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                text = self._queue.popleft()
                self._queued -= len(text)
                self._taken += 1
                try:
                    await self._send_text(text)
                except BeachError as exc:
                    self.mark_lost(f"relay failed: {exc.message}")
                    return
                if self._queued <= self._low_water:
                    self._drained()
            if not self._queue:
                self.idle.set()

    def deliver(self, text: str) -> None:
        """A relayed message from the peer (via the server)."""
        try:
            frame = self.kx.open_frame(text)
        except (SecurityError, ProtocolError) as exc:
            log.warning("%s: refusing a relayed frame: %s", self.name, exc)
            self.mark_lost(f"relayed frame refused: {exc.message}")
            return
        self._received(frame)

    async def _shutdown(self) -> None:
        await tasks.stop(self._writer)
        self._queue.clear()  # what the peer never took
        self._queued = 0
        for hook in self.on_shutdown:
            with contextlib.suppress(Exception):
                await hook()
