"""One joiner's stream once it is in: the frames it sends (keystrokes, resizes, requests for a
fresh screen) and a bounded sender of the shared terminal's output to it.

Each joiner has its own sender and output buffer, so a slow or hostile joiner can never stall
the PTY, the host's terminal or the other joiners. A joiner whose output waiting here would take
its path longer than PROMPT (plus a round trip) to deliver, or that falls more than
BACKLOG_LIMIT behind, is not fed the backlog: its buffer is dropped and it gets a fresh snapshot.
So a slow link never carries output the screen has already overwritten. And output faster than
anyone can read (a flood: FLOOD_BYTES within FLOOD_WINDOW) is not sent byte by byte to anyone:
while it lasts each joiner gets the current screen at most every FLOOD_INTERVAL, as mosh does,
which costs the host (and every link) a fraction of the bytes; the host's own terminal and
--record still get every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from ..bucket import TokenBucket
from ..errors import ProtocolError
from ..link.base import Link
from ..link.chunks import chunked
from ..wire import compression
from ..wire.frames import (
    ECHO_FEATURE,
    ECHO_OTHERS,
    ECHO_SECRET,
    FRAME_VERSION,
    MAX_CHUNK_BYTES,
    ExitStatus,
    Frame,
    Hello,
    decode_echo_wanted,
    decode_hello,
    decode_input,
    decode_resize,
    encode_ack,
    encode_echo,
    encode_exit,
    encode_frame,
    encode_hello,
    encode_resize,
)
from .contract import JoinerHost
from .handshake import Admission

log = logging.getLogger("beach.peer")

BACKLOG_LIMIT = 4 * 1024 * 1024
PROMPT = 0.25  # s: output its path would take longer than this (and a round trip) to deliver
MIN_SKIP = 16 * 1024  # bytes: less is never worth a fresh screen, whatever the pace
# A joiner skipping ahead gets the screen with this much history, not all of it (a slow path
# would spend longer on the scrollback than the skip saved).
SKIP_HISTORY = 32 * 1024
FLOOD_WINDOW = 0.1  # s
FLOOD_BYTES = 256 * 1024  # of output within a window: 2.6 MB/s, a thousand lines a tenth
FLOOD_INTERVAL = 0.1  # s: fresh screens of a skip or a flood, at most this often
FEATURES = (compression.FEATURE, ECHO_FEATURE)
# Predictive echo: a keystroke's echo is judged this long after it reached the PTY, and once
# the program has written something since (a program echoes within a millisecond or two; a
# busy host's shell can take tens); with nothing written, ECHO_WAIT_MAX after it (a password
# prompt writes nothing). A program slower still is judged wrong, and the joiner's guess goes,
# which costs a redraw, never a wrong screen.
ECHO_WAIT = 0.02
ECHO_WAIT_MAX = 0.1
ECHO_PENDING = 256  # keystroke batches awaiting their ECHO (older ones merge into newer)
COALESCE_AFTER = 0.005  # a send within this long means output is streaming...
COALESCE_WAIT = 0.001  # ...so wait this long for more before the next frame
COALESCE_MIN = 4096  # ...unless there is less than this to send (an echo, a prompt)
ACK_DELAY = 0.05  # acknowledge keystrokes in batches
# Each snapshot a joiner asks for costs a full screen: at most one outstanding, and no more
# than this many a second after a burst of SNAPSHOT_BURST.
SNAPSHOT_RATE = 1.0
SNAPSHOT_BURST = 3
NOTICE_MAX = 1024  # bytes of a NOTICE's text
# Told once to a view-only joiner that types: its keys go nowhere.
VIEW_ONLY_NOTICE = "view-only: your keystrokes are not sent to the shared terminal"


class Stream:
    def __init__(self, host: JoinerHost, peer_id: str, admission: Admission) -> None:
        self.host = host
        self.id = peer_id
        self.admission = admission
        self.link: Link | None = None  # from `start`
        self.size: tuple[int, int] | None = None  # the joiner's window
        self.deflate = False
        self.greeted = asyncio.Event()  # its HELLO came
        self._hello: Hello | None = None
        self._closed = False
        self._queue: deque[tuple[bytes, int]] = deque()  # (unit, raw length) not yet sent
        self._behind = 0  # raw bytes they stand for
        self._queued = 0  # bytes they take on the wire
        self._skips = 0  # fresh screens sent because the path could not keep up
        self._skipping = False  # the resync due is one of those
        self._snapshot_at = 0.0
        self._window_at = 0.0  # the flood window's start, and the output within it
        self._window_bytes = 0
        self._flooding = False
        self._floods = 0
        self._last_send = 0.0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._resync = False
        self._asked: asyncio.TimerHandle | None = None  # a joiner's snapshot request, paced
        self._snapshots = TokenBucket(SNAPSHOT_RATE, SNAPSHOT_BURST)
        self._wake = asyncio.Event()
        self._exit: bytes | None = None
        self._sender: asyncio.Task[None] | None = None
        self._dropped_input = 0  # keystrokes not for the PTY (a view-only joiner's)
        self._told_view_only = False
        # Predictive echo ("echo" feature): when each batch of keystrokes reached the PTY,
        # the ECHO due, and the ECHO held behind output still queued (the latest says all).
        self.echoes = False  # negotiated; ECHOs go only while the joiner asks (`echoing`)
        self._echo_asked = False
        self._applied: deque[tuple[float, int]] = deque()
        self._echo_timer: asyncio.TimerHandle | None = None
        self._output_at = 0.0  # the last PTY output, while ECHOs are due
        self._echoed = 0  # the offset the last ECHO named
        self._others = 0  # writes by others when it was sent
        self._echo_held: bytes | None = None
        self._echo_after = 0  # ...until this many units have gone out
        self._units_in = 0  # units queued, and sent (or dropped for a fresh screen), so far
        self._units_out = 0

    @property
    def started(self) -> bool:
        """It got as far as sharing the screen."""
        return self._sender is not None

    # -- frames from the joiner ----------------------------------------------------------------

    def on_frame(self, kind: Frame, body: bytes) -> None:
        try:
            if kind == Frame.HELLO and self._hello is None:
                self._hello = decode_hello(body)
                self.size = (self._hello.cols, self._hello.rows)
                self.greeted.set()
            elif kind == Frame.INPUT:
                self._input(*decode_input(body))
            elif kind == Frame.RESIZE:
                self.size = decode_resize(body)
                if self.started:
                    self.host.sizes_changed()
            elif kind == Frame.ECHO:  # it shows guesses now (or no longer): ECHOs are worth it
                self._echo_asked = decode_echo_wanted(body)
            elif kind == Frame.SNAPSHOT:  # a joiner asks to be brought up to date
                if self._asked is None:  # else one is already waiting for its turn
                    self._snapshot_due()
        except ProtocolError as exc:
            log.warning("peer %s: bad frame: %s", self.id, exc)

    def _input(self, offset: int, data: bytes) -> None:
        role, record = self.admission.role, self.admission.record
        if self.started and role == "rw" and record is not None:
            fresh = record.accept(offset, data)
            if fresh:
                self.host.keystrokes(fresh, self.id)
                if self.echoing:
                    self._echo_later(record.applied)
            if self._ack_timer is None:  # one ACK per burst of keystrokes
                loop = asyncio.get_running_loop()
                self._ack_timer = loop.call_later(ACK_DELAY, self._send_ack)
            return
        if not self._dropped_input:
            log.info("peer %s: dropping input from a %s joiner", self.id, role)
        self._dropped_input += len(data)
        if self.started and role == "view" and not self._told_view_only:
            self._told_view_only = True
            self.notice(VIEW_ONLY_NOTICE)

    def _snapshot_due(self) -> None:
        """A joiner's snapshot request: coalesced (one asked while another is outstanding adds
        nothing) and paced by a token bucket. Never dropped: an honest joiner discards output
        until its snapshot comes. The host's own resyncs (at start, or when the joiner falls
        behind) do not pass through here and never wait."""
        self._asked = None
        if self._resync or self._closed:
            return
        if self._snapshots.take():
            self.request_resync()
        else:
            delay = (1 - self._snapshots.tokens) / SNAPSHOT_RATE
            self._asked = asyncio.get_running_loop().call_later(delay, self._snapshot_due)

    # -- predictive echo -------------------------------------------------------------------------

    @property
    def echoing(self) -> bool:
        """The joiner speaks "echo" and shows guesses now: a joiner on a fast link asks for
        none, and costs the host no timer, no ECHO frame and no termios read."""
        return self.echoes and self._echo_asked

    def _echo_later(self, applied: int) -> None:
        if len(self._applied) >= ECHO_PENDING:
            self._applied.pop()  # the newest batch stands for the one dropped before it
        self._applied.append((time.monotonic(), applied))
        if self._echo_timer is None:
            self._echo_timer = asyncio.get_running_loop().call_later(ECHO_WAIT, self._echo_due)

    def _echo_due(self) -> None:
        """Keystrokes that reached the PTY ECHO_WAIT ago, and that the program has answered
        since (or ECHO_WAIT_MAX ago): what it made of them is read first, so the ECHO goes
        behind it."""
        self._echo_timer = None
        self.host.settle_output()
        now = time.monotonic()
        offset = None
        while self._applied:
            at = self._applied[0][0]
            if now < at + ECHO_WAIT - 0.001:
                break
            if self._output_at < at and now < at + ECHO_WAIT_MAX - 0.001:
                break  # nothing written since: output() calls again when something is
            offset = self._applied.popleft()[1]
        if self._applied:
            at = self._applied[0][0]
            due = at + (ECHO_WAIT if self._output_at >= at else ECHO_WAIT_MAX)
            self._echo_timer = asyncio.get_running_loop().call_later(due - now, self._echo_due)
        if offset is not None:
            self._echoed = offset
            self._send_echo()

    def _answered(self) -> None:
        """PTY output while ECHOs are due: one that waited for the program is due now."""
        now = self._output_at = time.monotonic()
        at = self._applied[0][0]
        if now >= at + ECHO_WAIT - 0.001 and self._echo_timer is not None:
            self._echo_timer.cancel()
            self._echo_timer = asyncio.get_running_loop().call_later(0, self._echo_due)

    def echo_state(self) -> None:
        """The PTY's password state changed: said behind the output so far (no new offset)."""
        if self.echoing and self.started:
            self._send_echo()

    def _send_echo(self) -> None:
        flags = ECHO_SECRET if self.host.secret_input() else 0
        others = self.host.writes_by_others(self.id)
        if others != self._others:
            self._others = others
            flags |= ECHO_OTHERS
        if self._echo_held is not None:  # replaced: the "others" it said still holds
            flags |= self._echo_held[-1] & ECHO_OTHERS
        frame = encode_echo(self._echoed, flags)
        if self._queue or self._resync or self._echo_held is not None:
            self._echo_held, self._echo_after = frame, self._units_in
            return
        if self.link is not None:
            self.link.send_control(frame)

    def _release_echo(self) -> None:
        """Output the held ECHO covers has gone out: it follows."""
        if self._echo_held is not None and self._units_out >= self._echo_after:
            frame, self._echo_held = self._echo_held, None
            if self.link is not None:
                self.link.send_control(frame)

    def _send_ack(self) -> None:
        self._ack_timer = None
        if self.link is not None and self.admission.record is not None:
            self.link.send_control(encode_ack(self.admission.record.applied))

    # -- output to the joiner --------------------------------------------------------------------

    def start(self, link: Link, cols: int, rows: int) -> None:
        """Greet the joiner and start streaming, beginning with a snapshot."""
        assert self._hello is not None
        self.link = link
        features = tuple(f for f in FEATURES if f in self._hello.features)
        self.deflate = compression.FEATURE in features
        self.echoes = ECHO_FEATURE in features and self.admission.role == "rw"
        self._others = self.host.writes_by_others(self.id)
        who = self.admission
        applied = who.record.applied if who.record is not None else 0
        hello = Hello(FRAME_VERSION, who.role, cols, rows, features, applied, who.resume_id)
        link.send_control(encode_hello(hello))
        self._resync = True
        self._wake.set()
        self._sender = asyncio.create_task(self._send_loop(link), name=f"sender-{self.id}")

    def send_size(self, cols: int, rows: int) -> None:
        if self.link is not None and self.started:
            self.link.send_control(encode_resize(cols, rows))

    def notice(self, text: str) -> None:
        """A line the joiner shows outside the shared screen."""
        if self.link is not None:
            self.link.send_control(encode_frame(Frame.NOTICE, text.encode()[:NOTICE_MAX]))

    def output(self, unit: bytes, raw_len: int) -> None:
        """One PTY read for this joiner: a deflate unit, or the raw bytes (no `deflate`)."""
        if self._sender is None or self._exit is not None:
            return
        if self._applied:  # keystrokes await their ECHO
            self._answered()
        link = self.link
        if self._flooded(raw_len):
            if not (self._resync and self._skipping):
                self._skip()
            return
        if self._behind + raw_len > BACKLOG_LIMIT:
            log.info(
                "peer %s: more than %d bytes behind, sending a fresh screen", self.id, BACKLOG_LIMIT
            )
            self._skip()
            return
        if (
            not self._queue
            and not self._resync
            and raw_len < COALESCE_MIN
            and link is not None
            and link.buffered <= link.high_water
        ):
            # An echo or a prompt with nothing queued before it: out at once, without the hop
            # through the sender task (that hop is a measurable part of keystroke latency).
            self._send_body(link, Frame.OUTPUT, unit)
            return
        self._queue.append((unit, raw_len))
        self._units_in += 1
        self._behind += raw_len
        self._queued += len(unit)
        if link is not None and not self._resync and self._too_late(link):
            self._skip()
            return
        self._wake.set()

    def _flooded(self, raw_len: int) -> bool:
        """Output faster than anyone reads: FLOOD_BYTES within a FLOOD_WINDOW. A window that
        flooded makes the next one a flood too, unless output paused in between."""
        now = time.monotonic()
        if now - self._window_at >= FLOOD_WINDOW:
            recent = now - self._window_at < 2 * FLOOD_WINDOW
            self._flooding = recent and self._window_bytes > FLOOD_BYTES
            self._window_at, self._window_bytes = now, 0
        self._window_bytes += raw_len
        if self._window_bytes > FLOOD_BYTES and not self._flooding:
            self._flooding = True
            self._floods += 1
            log.log(
                logging.INFO if self._floods == 1 else logging.DEBUG,
                "peer %s: output floods (over %d kB in %.1f s): sending the screen instead",
                self.id,
                FLOOD_BYTES // 1000,
                FLOOD_WINDOW,
            )
        return self._flooding

    def _too_late(self, link: Link) -> bool:
        """The output waiting here would reach the joiner later than PROMPT after a round trip
        (judged only once the path's pace is known, and never for a fresh screen's worth)."""
        seconds = link.pace.seconds_for(self._queued)
        if seconds is None or self._queued < MIN_SKIP:
            return False
        allowed = PROMPT + (link.pace.rtt or 0.0)
        if seconds <= allowed:
            return False
        self._skips += 1
        # Said once, then at debug: on a slow path under bulk output this happens often.
        log.log(
            logging.INFO if self._skips == 1 else logging.DEBUG,
            "peer %s: %.1f s behind on a path taking %.0f kB/s (round trip %.0f ms), "
            "sending a fresh screen",
            self.id,
            seconds,
            (link.pace.rate or 0) / 1000,
            (link.pace.rtt or 0) * 1000,
        )
        return True

    def _skip(self) -> None:
        """Drop what the joiner is behind by: a fresh screen (with little history) instead."""
        self.request_resync()
        self._skipping = True

    def request_resync(self) -> None:
        self._skipping = False
        self._queue.clear()
        self._units_out = self._units_in  # the fresh screen stands for them
        self._behind = 0
        self._queued = 0
        self._resync = True
        self._wake.set()

    def finish(self, status: ExitStatus) -> None:
        self._exit = encode_exit(status.code, status.signal, status.reason)
        self._wake.set()

    def _send_body(self, link: Link, kind: Frame, body: bytes) -> None:
        """One or more frames: a unit larger than a frame continues in OUTPUT frames (the
        joiner's inflater takes the stream in any pieces)."""
        for frame in chunked(kind, body, link.frame_size(MAX_CHUNK_BYTES)):
            link.send(frame)
        self._last_send = time.monotonic()

    async def _send_loop(self, link: Link) -> None:
        while not link.lost.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._behind >= COALESCE_MIN and time.monotonic() - self._last_send < COALESCE_AFTER:
                # Output is streaming: give the PTY a moment to add to this frame. A keystroke's
                # echo (a few bytes) goes out at once.
                await asyncio.sleep(COALESCE_WAIT)
            while (self._queue or self._resync) and not link.lost.is_set():
                await link.writable()
                if not self._resync and self._too_late(link):
                    self._skip()
                if self._resync:
                    wait = self._snapshot_at + FLOOD_INTERVAL - time.monotonic()
                    if self._skipping and wait > 0:  # skipping: fresh screens paced
                        await asyncio.sleep(wait)
                        continue
                    self._send_snapshot(link)
                else:
                    self._send_queued(link)
            if self._exit is not None and not self._queue:
                link.send_control(self._exit)
                return

    def _send_snapshot(self, link: Link) -> None:
        self._resync = False
        self._queue.clear()
        self._units_out = self._units_in
        self._behind = 0
        self._queued = 0
        snap = self.host.snapshot(recent=SKIP_HISTORY if self._skipping else None)
        self._skipping = False
        self._snapshot_at = time.monotonic()
        self._send_body(
            link, Frame.SNAPSHOT, compression.standalone(snap) if self.deflate else snap
        )
        self._release_echo()

    def _send_queued(self, link: Link) -> None:
        """Units concatenate into one valid stream: as many as fit go in one frame. A unit
        larger than a frame goes a frame at a time, the rest waiting its turn, so that a skip
        can still drop it (the joiner's inflater resets on the SNAPSHOT that follows)."""
        most = link.frame_size(MAX_CHUNK_BYTES)
        unit, raw_len = self._queue.popleft()
        if len(unit) > most:
            self._queue.appendleft((unit[most:], raw_len))
            self._queued -= most
            self._send_body(link, Frame.OUTPUT, unit[:most])
            return
        body = bytearray(unit)
        self._behind -= raw_len
        self._units_out += 1
        while self._queue and len(body) + len(self._queue[0][0]) <= most:
            unit, raw_len = self._queue.popleft()
            body += unit
            self._behind -= raw_len
            self._units_out += 1
        self._queued -= len(body)
        self._send_body(link, Frame.OUTPUT, bytes(body))
        self._release_echo()

    # -- the end ---------------------------------------------------------------------------------

    async def flushed(self, timeout: float) -> None:
        """Wait until the exit frame is handed to the channel and the joiner hangs up. Only
        the timeouts are quiet: a cancellation of the caller is raised."""
        with contextlib.suppress(TimeoutError):
            if self._sender is not None:
                # asyncio.wait: the sender's own end (even cancelled) is not raised here, and
                # the timeout does not cancel it.
                await asyncio.wait_for(asyncio.wait({self._sender}), timeout)
            if self.link is not None:
                await asyncio.wait_for(self.link.lost.wait(), timeout)

    def close(self) -> None:
        """The joiner's task is ending: stop every timer and task the stream owns."""
        self._closed = True
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        if self._echo_timer is not None:
            self._echo_timer.cancel()
        if self._asked is not None:
            self._asked.cancel()
        if self._sender is not None:
            self._sender.cancel()
        if self._dropped_input:
            log.info("peer %s: dropped %d bytes of its input", self.id, self._dropped_input)
