"""What every path to a peer shares, whether a WebRTC data channel (rtc.py) or the sealed relay
through the server (relay.py): frame dispatch, PING/PONG, the heartbeat that notices a silent
peer, the `lost` event, and backpressure.

Nothing a peer sends may make us hold more than a bounded amount for it. Output waits for
`writable`; the frames a peer can provoke (PONG, ACK, RESIZE, NOTICE, HELLO, EXIT) go through
`send_control`, which keeps at most one of each kind while the link is behind; a PING is
answered only when it is the 8 bytes beach sends and the link is keeping up; and a peer that
stops taking what we send (HARD_CAP unsent, or nothing taken for STALL_TIMEOUT) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .. import tasks
from ..errors import ConnectTimeout, ProtocolError
from ..wire.frames import Frame, decode_frame, encode_frame
from .pace import Pace

log = logging.getLogger("beach.link")

PING_INTERVAL = 1.0
# Any frame counts as a sign of life; silence this long means the peer is gone.
PEER_TIMEOUT = 4.0
# Backpressure: stop queueing above the high-water mark, resume once drained below a quarter of
# it. The mark follows the path's pace: about CHANNEL_SECONDS of what it delivers, so that what
# a slow path cannot carry soon waits with the sender, which can still skip it (host/stream.py),
# rather than inside the path, where it can only be delivered late.
HIGH_WATER = 1024 * 1024  # the most, on a fast path
MIN_HIGH_WATER = 16 * 1024
FIRST_HIGH_WATER = 64 * 1024  # until the pace is known
CHANNEL_SECONDS = 0.1
# A path takes a message whole: on a slow one, smaller frames let output wait with the sender
# (a 64 KiB frame is a quarter of a second at 2 Mbit/s).
FRAME_SECONDS = 0.05
MIN_FRAME = 4 * 1024
MEASURE_EVERY = 0.1  # s: how often a sender waiting for the path samples its pace
LOW_WATER = 256 * 1024  # PINGs and PONGs only behind less than this
# Everything waits for `writable` or is coalesced, so nothing should ever reach this: a link
# holding this much unsent is not being read, and is dropped rather than grown.
HARD_CAP = 8 * 1024 * 1024
# A peer still talking to us but taking nothing we send for this long is not reading. (An honest
# peer whose half of the path has failed hears nothing from us and hangs up after PEER_TIMEOUT.)
STALL_TIMEOUT = 10.0
# What beach puts in a PING (its send time); any other PING is not ours and gets no answer.
PING_BYTES = 8


class Link:
    path = "?"  # how the bytes travel, for the person watching
    through_server = False  # the peer's frames reach us through the server (the relay)
    settled = True  # the path is decided (an early-relay link: once it moved or stayed)

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
        self._control: dict[int, bytes] = {}  # frames waiting for the link to drain, by kind
        self._sent = 0  # bytes handed to `_transmit`
        self._progress_seen: object = None
        self._stalled_since = time.monotonic()
        self.pace = Pace()
        self._low_water = FIRST_HIGH_WATER // 4  # the drain threshold the path goes by

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

    def _progress(self) -> object:
        """Changes whenever the peer takes something we sent (a path may know better)."""
        return self._sent - self.buffered

    def _outstanding(self) -> bool:
        """We have sent something the peer has not taken yet."""
        return self.buffered > 0

    def _set_low_water(self, nbytes: int) -> None:
        """`_low_water` changed: a path that does not read it itself is told here."""

    # -- pace ------------------------------------------------------------------------------------

    @property
    def high_water(self) -> int:
        """How much the path itself may hold for the peer (see CHANNEL_SECONDS)."""
        rate = self.pace.rate
        if rate is None:
            return FIRST_HIGH_WATER
        return int(min(HIGH_WATER, max(MIN_HIGH_WATER, rate * CHANNEL_SECONDS)))

    def frame_size(self, most: int) -> int:
        """The largest frame of output worth handing the path at once (at most `most`)."""
        rate = self.pace.rate
        if rate is None:
            return most
        return int(min(most, max(MIN_FRAME, rate * FRAME_SECONDS)))

    def _measure(self) -> int:
        """Sample the pace; the high-water mark that follows from it."""
        buffered = self.buffered
        self.pace.sample(time.monotonic(), self._sent - buffered, buffered)
        high = self.high_water
        if high // 4 != self._low_water:
            self._low_water = high // 4
            self._set_low_water(self._low_water)
        return high

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
            # A liveness probe, answered only as beach sends it and only while the link keeps
            # up: behind a backlog a PONG would arrive no sooner than the backlog, and a peer
            # must not be able to make us queue anything it will not read.
            if len(body) == PING_BYTES and self.buffered <= LOW_WATER and not self._control:
                self.send(encode_frame(Frame.PONG, body))
        elif kind == Frame.PONG:
            # A sign of life, counted above, and a round trip if it answers a PING of ours.
            if len(body) == PING_BYTES:
                sent = int.from_bytes(body, "big")
                self.pace.round_trip((time.monotonic_ns() - sent) / 1e9)
        else:
            self._on_frame(kind, body)

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False if the link is not usable. Never blocks. For output that
        waited for `writable`; a frame the peer can provoke goes through `send_control`."""
        if not self.usable or self.lost.is_set():
            return False
        try:
            self._transmit(frame)
        except Exception as exc:  # aiortc raises various errors on a dying transport
            self.mark_lost(f"send failed: {exc}")
            return False
        self._sent += len(frame)
        if self.buffered > HARD_CAP:
            self.mark_lost(f"not reading ({self.buffered} bytes unsent)")
            return False
        if self.buffered > self._measure():
            self._writable.clear()
        return True

    def send_control(self, frame: bytes) -> bool:
        """A small frame the peer may cause us to send (ACK, RESIZE, NOTICE, HELLO, EXIT): out
        now if the link keeps up, else held until it drains, the latest of each kind replacing
        an older one (each kind says everything there is to say). False if the link is gone."""
        if self.lost.is_set():
            return False
        if self._control or self.buffered > self.high_water:
            self._control.pop(frame[0], None)  # the latest goes last, after older kinds
            self._control[frame[0]] = frame
            return True
        return self.send(frame)

    def redirect(self, on_frame: Callable[[Frame, bytes], None]) -> None:
        """From now on frames go to `on_frame` (a link handed over to another: handover.py)."""
        self._on_frame = on_frame

    def flush_held(self) -> None:
        """Send every held control frame now, whatever the backlog: the last word on a path
        that is being left (they are small, and one of each kind at most)."""
        while self._control and not self.lost.is_set():
            kind = next(iter(self._control))
            self.send(self._control.pop(kind))

    def _flush_control(self) -> None:
        while self._control and self.buffered <= self.high_water and not self.lost.is_set():
            kind = next(iter(self._control))
            self.send(self._control.pop(kind))

    def _drained(self) -> None:
        high = self._measure()
        self._flush_control()
        if self.buffered <= high:
            self._writable.set()

    async def writable(self) -> None:
        """Wait until the link has drained below the low-water mark (or is lost), measuring
        its pace meanwhile: a slow path's is known within a moment of a burst."""
        while self.buffered > self._measure() and not self.lost.is_set():
            self._writable.clear()
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(MEASURE_EVERY):
                    await self._writable.wait()

    async def _heartbeat_loop(self) -> None:
        while not self.lost.is_set():
            if self.buffered <= LOW_WATER:  # behind a backlog a probe proves nothing
                ping = time.monotonic_ns().to_bytes(PING_BYTES, "big")
                self.send(encode_frame(Frame.PING, ping))
            try:
                await asyncio.wait_for(self.lost.wait(), PING_INTERVAL)
                return
            except TimeoutError:
                pass
            self._measure()
            self._flush_control()
            now = time.monotonic()
            if now - self._last_heard > PEER_TIMEOUT:
                self.mark_lost(f"no sign of life for {PEER_TIMEOUT:.0f} s")
            self._check_stall(now)

    def _check_stall(self, now: float) -> None:
        progress = self._progress()
        if not self._outstanding() or progress != self._progress_seen:
            self._progress_seen = progress
            self._stalled_since = now
        elif now - self._stalled_since > STALL_TIMEOUT:
            self.mark_lost(f"not reading (took nothing we sent for {STALL_TIMEOUT:.0f} s)")

    def mark_lost(self, reason: str) -> None:
        """The peer is gone (or must be let go): `lost` is set, for `reason`, once."""
        if not self.lost.is_set():
            self.lost_reason = reason
            log.debug("%s: lost (%s)", self.name, reason)
            self.lost.set()
            self._writable.set()
            self._control.clear()

    async def close(self) -> None:
        self.mark_lost("closed")
        await tasks.stop(self._heartbeat)
        await self._shutdown()
