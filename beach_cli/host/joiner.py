"""The host's side of one joiner: its handshake (host/handshake.py), then its stream
(host/stream.py), in one task of its own.

The session calls only what is public here: `deliver`, `relay_in`, `left` and `close` for the
server's news, `output`, `send_size`, `notice` and `finish` for the shared terminal, and the
facts it shows (`state`, `role`, `size`, `label`...). The joiner sees the session as a `JoinerHost`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..link.handover import HandoverLink
from ..link.relay import RelayLink
from ..wire.frames import ExitStatus
from .contract import JoinerHost
from .handshake import Admission, Handshake
from .stream import Stream

log = logging.getLogger("beach.peer")

# How a link is lost when the joiner hangs up (link/rtc.py, and `left` below for the relay);
# the rest (silence, a stall, a failed send) may be a network drop it will come back from.
HANG_UPS = frozenset({"channel closed", "connection closed", "the joiner left"})


class Joiner:
    def __init__(
        self, host: JoinerHost, peer_id: str, addr: str, ice_servers: list[dict[str, Any]]
    ) -> None:
        self._host = host
        self.id = peer_id
        self.addr = addr
        self._state: str | None = None  # "live", then "closed"; before that the handshake's
        admission = Admission()
        self._admission = admission
        self._stream = Stream(host, peer_id, admission)
        stream = self._stream
        self._handshake = Handshake(
            host, self, admission, ice_servers, stream.on_frame, stream.greeted
        )
        self._handshake.on_settled = self._settled
        self.task = asyncio.create_task(self._run(), name=f"peer-{peer_id}")

    # -- facts -----------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.id} ({self.addr})" if self.addr else self.id

    @property
    def role(self) -> str:
        return self._admission.role

    @property
    def key(self) -> str | None:
        return self._admission.key

    @property
    def state(self) -> str:
        """One of "handshake", "connecting" (its link is being made), "live", "closed"."""
        if self._state is not None:
            return self._state
        return "handshake" if self._handshake.link is None else "connecting"

    @property
    def size(self) -> tuple[int, int] | None:
        return self._stream.size

    @property
    def deflate(self) -> bool:
        """It takes output as deflate units (else raw bytes)."""
        return self._stream.deflate

    @property
    def echoes(self) -> bool:
        """It predicts local echo and takes ECHO frames."""
        return self._stream.echoing

    @property
    def relayed(self) -> bool:
        link = self._handshake.link
        if isinstance(link, HandoverLink):  # on the relay until its channel opens, or for good
            return link.relayed
        return isinstance(link, RelayLink)

    @property
    def hung_up(self) -> bool:
        """It left by hanging up (its channel closed, or the server saw a relayed joiner go),
        not by going silent: it is not about to reconnect."""
        link = self._handshake.link
        return link is not None and link.lost_reason in HANG_UPS

    @property
    def was_live(self) -> bool:
        """It got as far as sharing the screen (so its leaving is news for the host)."""
        return self._stream.started

    # -- lifecycle -------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            link = await self._handshake.run()
            if link is None:  # turned away, or gone
                return
            self._state = "live"
            self._stream.start(link, *self._host.shared_size())
            self._host.peer_live(self)
            await link.lost.wait()
            log.info("peer %s: %s", self.id, link.lost_reason)
        except Exception:  # a cancellation (the host ending) is no error and goes on up
            log.exception("peer %s: unexpected error", self.id)
        finally:
            self._state = "closed"
            self._stream.close()
            if self._handshake.link is not None:
                await self._handshake.link.close()
            self._host.peer_gone(self)

    def _settled(self, link: HandoverLink) -> None:
        """An early-relay joiner's path is decided: the data channel, or the relay for good."""
        if link.relayed and self._state == "live":
            self._host.notify(f"{self.label}: no direct path, continuing via the server")

    # -- the server's news -----------------------------------------------------------------------

    def deliver(self, data: dict[str, Any]) -> None:
        """A signal from the joiner; one that sends more than a handshake holds is let go."""
        if not self._handshake.deliver(data):
            self.close()

    def relay_in(self, text: str) -> None:
        """A frame from the joiner, relayed by the server."""
        self._handshake.relay_in(text)

    def left(self) -> None:
        """The server says the joiner hung up. Once WebRTC is under way the data channel
        decides liveness: joiners hang up on the server as soon as their channel opens."""
        link = self._handshake.link
        if link is not None and not link.through_server:
            return
        if not self._handshake.hear_left():
            self.close()

    def close(self) -> None:
        """Called when the joiner is gone (or the host is ending)."""
        link = self._handshake.link
        if link is not None:
            link.mark_lost("the joiner left")
        elif not self.task.done():
            self.task.cancel()

    # -- the shared terminal ---------------------------------------------------------------------

    def output(self, unit: bytes, raw_len: int) -> None:
        """One PTY read: a deflate unit if `deflate`, else the raw bytes."""
        self._stream.output(unit, raw_len)

    def echo_state(self) -> None:
        """The PTY's password state changed: the joiner hears it behind the output so far."""
        self._stream.echo_state()

    def send_size(self, cols: int, rows: int) -> None:
        self._stream.send_size(cols, rows)

    def notice(self, text: str) -> None:
        """A line the joiner shows outside the shared screen (its title)."""
        self._stream.notice(text)

    def finish(self, status: ExitStatus) -> None:
        """The shared program ended: the joiner is told after the output before it."""
        self._stream.finish(status)

    async def flushed(self, timeout: float) -> None:
        await self._stream.flushed(timeout)
