"""One link to the peer across the move from the sealed server relay to the data channel.

The relay needs none of ICE, DTLS, SCTP or DCEP, so an early-relay join (both ends said
"early") streams over it as soon as the key is confirmed and moves to the data channel once
that opens: the screen shows about five round trips sooner. The host's Stream and the joiner's
JoinSession see this one Link throughout and never learn of the move.

Order across the move, each direction on its own: once its channel is open, a side sends
HANDOVER as its last relayed frame and everything after on the channel. The other side takes
relayed frames until that marker, holding what the channel brings meanwhile (at most
HOLD_BYTES, for at most HOLD_WAIT: a withheld marker ends the link with one line, never a hang),
then the held frames, then the channel. A side whose channel does not open says HANDOVER
b"relay" instead, and both stay on the relay. Everything stays sealed, on either path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from .. import tasks
from ..errors import BeachError
from ..wire.frames import Frame, encode_frame
from .base import Link
from .relay import RelayLink

log = logging.getLogger("beach.link")

# Frames the channel may bring before the peer's marker comes over the relay: the relay holds
# at most a tenth of a second of its pace, so an honest peer's marker is a round trip away.
HOLD_BYTES = 8 * 1024 * 1024
HOLD_WAIT = 10.0  # s
# Once both directions have moved, what the relay still holds has this long to reach the server.
RETIRE_WAIT = 10.0  # s
MOVE = encode_frame(Frame.HANDOVER)
STAY = encode_frame(Frame.HANDOVER, b"relay")


async def _first(*events: asyncio.Event) -> None:
    """Until one of `events` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class HandoverLink(Link):
    """The relay first, the data channel `channel` once it opens within `open_within` s. The
    two paths keep their own heartbeats; this link is lost when the path in use is."""

    def __init__(
        self,
        relay: RelayLink,
        channel: Link,
        on_frame: Callable[[Frame, bytes], None],
        name: str,
        open_within: float,
        on_settled: Callable[[HandoverLink], None] | None = None,
    ) -> None:
        super().__init__(on_frame, name)
        self.relay = relay
        self.channel: Link | None = channel  # None once it failed: the relay for good
        self._out: Link = relay
        self.pace = relay.pace
        self.moved_in = asyncio.Event()  # the peer's marker came: its frames use the channel
        self._stay = asyncio.Event()  # the peer's channel did not open
        self._held: deque[tuple[Frame, bytes]] = deque()
        self._held_bytes = 0
        self._hold_timer: asyncio.TimerHandle | None = None
        self._said: set[str] = set()
        self._started = time.monotonic()
        self._on_settled = on_settled
        self.settled = False
        relay.redirect(self._from_relay)
        channel.redirect(self._from_channel)
        self._opened()
        self._task = asyncio.create_task(self._run(open_within), name=f"handover-{name}")

    # -- what the session sees: the path in use ---------------------------------------------------

    @property
    def path(self) -> str:  # type: ignore[override]
        return self.channel.path if self.channel is not None and self.moved else self.relay.path

    @property
    def moved(self) -> bool:
        """Both directions use the data channel."""
        return self._out is not self.relay and self.moved_in.is_set()

    @property
    def through_server(self) -> bool:  # type: ignore[override]
        return not self.moved_in.is_set()

    @property
    def relayed(self) -> bool:
        """Settled on the relay: no channel is coming."""
        return self.channel is None

    @property
    def buffered(self) -> int:
        return self._out.buffered

    @property
    def usable(self) -> bool:
        return self._out.usable and not self.lost.is_set()

    @property
    def high_water(self) -> int:
        return self._out.high_water

    def frame_size(self, most: int) -> int:
        return self._out.frame_size(most)

    def send(self, frame: bytes) -> bool:
        return not self.lost.is_set() and self._out.send(frame)

    def send_control(self, frame: bytes) -> bool:
        return not self.lost.is_set() and self._out.send_control(frame)

    async def writable(self) -> None:
        out = self._out
        await _first_done(out.writable(), self.lost)

    async def wait_open(self, timeout: float) -> None:
        """Open from the start (the relay is); each path runs its own heartbeat."""

    # -- frames in --------------------------------------------------------------------------------

    def _from_relay(self, kind: Frame, body: bytes) -> None:
        if kind == Frame.HANDOVER:
            self._marker(body)
        elif self.moved_in.is_set():
            self._once("late", "%s: a relayed frame after the move to the data channel: dropped")
        else:
            self._on_frame(kind, body)

    def _marker(self, body: bytes) -> None:
        if self.moved_in.is_set() or self._stay.is_set():
            self._once("twice", "%s: a second HANDOVER marker: ignored")
        elif body == b"relay":
            log.info(
                "%s: the peer's data channel did not open: staying on the server relay", self.name
            )
            self._stay.set()
        elif body:
            self._once("junk", "%s: a HANDOVER marker with a body: ignored")
        else:
            self.moved_in.set()
            if self._hold_timer is not None:
                self._hold_timer.cancel()
            held, self._held = self._held, deque()
            self._held_bytes = 0
            for frame in held:
                self._on_frame(*frame)

    def _from_channel(self, kind: Frame, body: bytes) -> None:
        if kind == Frame.HANDOVER:
            self._once("wrong", "%s: a HANDOVER marker on the data channel: ignored")
        elif self.moved_in.is_set():
            self._on_frame(kind, body)
        elif self._stay.is_set():
            self._once("stayed", "%s: a frame on a data channel said not to open: dropped")
        else:
            self._held_bytes += 1 + len(body)
            if self._held_bytes > HOLD_BYTES:
                self._held.clear()
                self.mark_lost(
                    f"the peer's move to the data channel overran {HOLD_BYTES // 1024} KiB "
                    "before its marker came through the server"
                )
                return
            self._held.append((kind, body))
            if self._hold_timer is None:
                loop = asyncio.get_running_loop()
                self._hold_timer = loop.call_later(HOLD_WAIT, self._hold_expired)

    def _hold_expired(self) -> None:
        if not self.moved_in.is_set():
            self._held.clear()
            self.mark_lost(
                f"the peer moved to the data channel but its marker did not come through the "
                f"server within {HOLD_WAIT:.0f} s"
            )

    def _once(self, what: str, line: str) -> None:
        if what not in self._said:
            self._said.add(what)
            log.warning(line, self.name)

    # -- the move -----------------------------------------------------------------------------

    async def _run(self, open_within: float) -> None:
        relay = self.relay
        channel = self.channel
        assert channel is not None
        try:
            opened = await self._until_open(channel, open_within)
            if self.lost.is_set():
                return
            if not opened:
                await self._stay_on_relay(channel)
                await relay.lost.wait()
                self.mark_lost(relay.lost_reason)
                return
            relay.flush_held()  # what waited for the relay goes before the marker
            relay.send(MOVE)
            self._out = channel
            self.pace = channel.pace
            await _first(self.moved_in, channel.lost, relay.lost)
            if not self.moved_in.is_set() and not channel.lost.is_set():
                self.mark_lost(relay.lost_reason)  # the peer's frames may still be on it
                return
            if not channel.lost.is_set():
                took = time.monotonic() - self._started
                log.info(
                    "%s: moved to the data channel (%s) after %.2f s", self.name, self.path, took
                )
                self._settled()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETIRE_WAIT):
                        await _first(relay.idle, relay.lost)
                await relay.close()
                await channel.lost.wait()
            self.mark_lost(channel.lost_reason)
        except BeachError as exc:
            self.mark_lost(exc.message)

    async def _until_open(self, channel: Link, open_within: float) -> bool:
        """True once the channel is open; False if it failed, timed out or the peer said its
        own did not open. The relay's loss ends the whole link."""
        opened = asyncio.ensure_future(channel.wait_open(open_within))
        try:
            await _first_done(opened, channel.lost, self._stay, self.relay.lost, self.lost)
        finally:
            opened.cancel()
        if self.relay.lost.is_set():
            self.mark_lost(self.relay.lost_reason)
            return False
        if self._stay.is_set():
            return False
        return opened.done() and not opened.cancelled() and opened.exception() is None

    async def _stay_on_relay(self, channel: Link) -> None:
        if not self._stay.is_set():
            self.relay.send(STAY)  # the peer need not wait for its channel any longer
            log.info("%s: no data channel opened: staying on the server relay", self.name)
        self.channel = None
        self._held.clear()
        self._settled()
        await channel.close()

    def _settled(self) -> None:
        self.settled = True
        if self._on_settled is not None:
            self._on_settled(self)

    def mark_lost(self, reason: str) -> None:
        super().mark_lost(reason)
        if self._hold_timer is not None:
            self._hold_timer.cancel()

    async def _shutdown(self) -> None:
        await tasks.stop(self._task)
        if self.channel is not None:
            await self.channel.close()
        await self.relay.close()


async def _first_done(waitable: Awaitable[object], *events: asyncio.Event) -> None:
    """Until `waitable` (a future or coroutine) ends or one of `events` is set."""
    fut = asyncio.ensure_future(waitable)
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([fut, *waits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        if not fut.done():
            fut.cancel()
