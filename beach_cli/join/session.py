"""`beach join`: mirror the shared terminal in this one, and keep doing so across network
drops by reconnecting with the same token.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ..backoff import Backoff
from ..errors import (
    BeachError,
    HostAway,
    HostGone,
    ProtocolError,
    RateLimited,
    Refused,
    SecurityError,
    WrongToken,
)
from ..keys import parse_token
from ..link.base import Link
from ..link.loader import load_rtc
from ..recent import remember_server
from ..resume import InputLog
from ..screen.status_line import PRIME as STATUS_PRIME
from ..screen.status_line import StatusLine
from ..terminal import CURSOR_REPORT, LocalTerminal, eprint
from ..text import printable
from ..wire import compression
from ..wire.frames import (
    ECHO_FEATURE,
    FRAME_VERSION,
    ExitStatus,
    Frame,
    Hello,
    decode_ack,
    decode_echo,
    decode_exit,
    decode_hello,
    decode_resize,
    encode_echo_wanted,
    encode_frame,
    encode_hello,
    encode_input,
    encode_resize,
    exit_reason,
)
from .dialer import Dialer
from .echo import PredictiveEcho
from .viewport import Viewport

log = logging.getLogger("beach.join")

DETACH_PREFIX = 0x1D  # Ctrl-]
DETACH_KEYS = (ord("d"), ord("."))
HELLO_TIMEOUT = 10.0
HELLO_AGAIN = 1.0  # s before HELLO is said again (then 2, 4...), within HELLO_TIMEOUT
INPUT_CHUNK = 32 * 1024
# More than this waiting for a slow local terminal: drop it and ask for a fresh screen.
LOCAL_BACKLOG = 8 * 1024 * 1024
# After losing the host, keep trying this long (a Wi-Fi drop, a server restart).
RECONNECT_FOR = 120.0
RECONNECT_MAX_DELAY = 5.0
ATTEMPT = 8.0  # seconds for each step of a reconnect attempt: soon again after the network is back
# On the way out, undo modes the shared program may have left on: alternate screen, hidden
# cursor, mouse reporting, bracketed paste, application keypad, colours, scroll region; and
# pop the window title we pushed.
LEAVE = (
    b"\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l"
    b"\x1b[?2004l\x1b[?1l\x1b>\x1b[0m\x1b7\x1b[r\x1b8\x1b[23;0t\r\n"
)
PUSH_TITLE = b"\x1b[22;0t"
# Inflate a frame this much at a time, drawing each piece before inflating more, and letting
# the loop run (keystrokes, Ctrl-] d, signals) between pieces...
INFLATE_PIECE = 64 * 1024
# ...and no more than this per frame. Legitimate frames stay far below it: the host never
# queues more than 4 MiB of output for a joiner (it sends a fresh screen instead) and a
# snapshot is at most ~1.5 MB. More is a deflate bomb: a bad frame, answered with a resync.
FRAME_INFLATE_MAX = 8 * 1024 * 1024
# Output that cannot be shown (a rendering error, a bad deflate stream, a bomb): start over
# from a fresh screen. This many failures, each within RENDER_QUIET s of the one before, and
# the joiner gives up instead of looping.
RENDER_FAILURES = 3
RENDER_QUIET = 30.0
# Frames arriving while a large one is still being drawn wait (in order) up to this many
# bytes; past it they are dropped for a fresh screen.
FRAME_QUEUE_MAX = 8 * 1024 * 1024
# A view-only joiner that types is told so once, across the bottom row, for this long; then a
# fresh screen puts that row back exactly as the host has it. Its keys are never sent.
VIEW_ONLY_LINE = "beach: you are watching (view-only): your keystrokes are not sent"
VIEW_ONLY_SHOWN = 4.0


class BadOutput(Exception):
    """A frame whose output cannot be shown; answered with a resync, never fatal at once."""


@dataclass
class JoinOptions:
    token: str
    server: str
    connect_timeout: float = 20.0
    ice_servers: tuple[str, ...] = ()
    identity_file: Path | None = None  # -i FILE: the SSH key to prove, if the host asks one
    predict: str = "auto"  # predictive echo: auto, always, never (join/echo.py)
    quiet: bool = False  # the path only in the title, never in a line across the screen


class JoinSession:
    def __init__(self, opts: JoinOptions, terminal: LocalTerminal) -> None:
        self.opts = opts
        self.term = terminal
        self.console = Console(stderr=True, highlight=False)
        self.token = parse_token(opts.token)
        self.link: Any = None
        self.exit_line = ""
        self._done: asyncio.Future[int] | None = None
        self._decompress: Any = None
        self._hello: Hello | None = None
        self._hello_event = asyncio.Event()
        self._awaiting_snapshot = False
        self._failures = 0
        self._last_failure = 0.0
        self._drawing: asyncio.Task[None] | None = None  # the rest of a large frame
        self._queue: deque[tuple[Frame, bytes]] = deque()  # frames behind it
        self._queued = 0
        self._prefix = False
        self._drew = False
        self._raw = False
        self.pty_size: tuple[int, int] | None = None
        self.viewport: Viewport | None = None
        self._told_small = False
        self.inputs = InputLog()
        self.resume_id: str | None = None
        self.timings: dict[str, float] = {"start": time.monotonic()}
        self._identity: Any = None  # identity.signer.Identity, from -i FILE
        self._told_view_only = False
        self._resync_later: asyncio.TimerHandle | None = None  # after the viewer's line
        self.echo = PredictiveEcho(opts.predict)
        # A line of our own across the screen (how we are connected), put back cell for cell.
        self.status_line = StatusLine(self.term.write, self._status_replay)
        self._path_said: str | None = None
        self.echo.on_want = self._want_echo

    # -- the session -------------------------------------------------------------------------

    @staticmethod
    def _signer() -> Any:
        # Imported only when a key is asked for: asyncssh takes a quarter of a second to load.
        return importlib.import_module("..identity.signer", __package__)

    async def _prove(self, binding: bytes, hints: list[str]) -> dict[str, Any]:
        signer = await asyncio.to_thread(self._signer)
        proof: dict[str, Any] = await signer.prove(binding, hints, self._identity)
        return proof

    async def run(self) -> int:
        rtc = asyncio.ensure_future(load_rtc())  # while we talk to the server
        dialer = Dialer(
            self.opts.server,
            self.token,
            list(self.opts.ice_servers),
            self.opts.connect_timeout,
            rtc,
            self._on_frame,
            self._prove,
            on_settled=self._say_path,
        )
        if self.opts.identity_file is not None:  # read now: a passphrase is asked before we dial
            signer = await asyncio.to_thread(self._signer)
            self._identity = await asyncio.to_thread(signer.load_identity, self.opts.identity_file)
        self._done = asyncio.get_running_loop().create_future()
        try:
            with self.console.status("connecting to server", spinner="dots") as status:
                self.link = await dialer.dial(status.update, None)
                self.timings.update(dialer.marks)
            remember_server(self.opts.server)  # for a bare token next time (recent.py)
            await self._greet()
            self._enter_terminal()
            while True:
                lost = asyncio.ensure_future(self.link.lost.wait())
                try:
                    await asyncio.wait({lost, self._done}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                if self._done.done():
                    return self._done.result()
                await self._reconnect(dialer)
                if self._done.done():
                    return self._done.result()
        finally:
            rtc.cancel()
            if self._resync_later is not None:
                self._resync_later.cancel()
            self._stop_drawing()
            if self.link is not None:
                await self.link.close()
            if self.echo.predictor.stats.keys:
                log.info("predictive echo: %s", self.echo.summary())
            if self._drew:
                self.term.write(self.status_line.close() + self.echo.finish() + LEAVE)
                await self.term.drain(1.0)
            self.term.restore()

    async def _greet(self) -> None:
        """HELLO both ways on a fresh channel, then resend keystrokes the host lacks."""
        self._hello, self._decompress = None, None
        self._stop_drawing()
        self._hello_event.clear()
        cols, rows = self.term.size()
        features = (compression.FEATURE,) + (
            (ECHO_FEATURE,) if self.opts.predict != "never" else ()
        )
        hello = encode_hello(Hello(FRAME_VERSION, self.token.role, cols, rows, features))
        # Said again while unanswered: a message sent the moment a fresh data channel opens
        # now and then never reaches the host (seen in CI; aiortc#1194 reports the same), and a
        # host takes only the first.
        deadline = time.monotonic() + HELLO_TIMEOUT
        wait = HELLO_AGAIN
        while not self._hello_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostGone("the host did not greet us")
            self.link.send(hello)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # (Ctrl-C, SIGTERM) that comes just as the HELLO does, and we would not stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, left)):
                    await self._hello_event.wait()
            wait *= 2
        assert self._hello is not None
        self.resume_id = self._hello.resume
        start, missing = self.inputs.since(self._hello.applied)
        self._send_input(start, missing)
        self.timings["hello"] = time.monotonic()
        t0 = self.timings["start"]
        parts = ", ".join(
            f"{k} +{(v - t0) * 1000:.0f} ms" for k, v in self.timings.items() if k != "start"
        )
        log.info("connected (%s): %s", self.link.path, parts)

    def _enter_terminal(self) -> None:
        self.term.enter_raw()
        self._raw = True
        self.term.start_input(self._on_input, lambda: None)
        if self.term.is_tty:
            self.term.on_resize(self._on_resize)

    async def _reconnect(self, dialer: Dialer) -> None:
        """The channel is gone without an EXIT: dial again, with backoff, until it works, the
        host is known to be gone, or RECONNECT_FOR runs out. Keystrokes typed meanwhile wait
        in the input log."""
        assert self._done is not None
        reason = self.link.lost_reason
        await self.link.close()
        self.link = None
        log.info("lost the host (%s); reconnecting", reason)
        deadline = time.monotonic() + RECONNECT_FOR
        backoff, attempt = Backoff(0.5, RECONNECT_MAX_DELAY), 0
        self._banner(f"connection lost ({reason}); reconnecting")
        while not self._done.done():
            attempt += 1
            dial = asyncio.ensure_future(
                dialer.dial(lambda _: None, self.resume_id, min(self.opts.connect_timeout, ATTEMPT))
            )
            waiters: set[asyncio.Future[Any]] = {dial, self._done}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if self._done.done():  # detached while reconnecting
                dial.cancel()
                return
            last = await self._rejoin(dial)
            if last is None:
                log.info("reconnected after %d attempt(s)", attempt)
                self._title("beach: reconnected")
                self._say_path()  # if the path changed (else the title says "reconnected")
                return
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                raise HostGone(
                    f"lost the connection to the host and could not reconnect in "
                    f"{RECONNECT_FOR:.0f} s ({last})"
                )
            self._banner(f"reconnecting (attempt {attempt}: {last})")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: see _greet
                    await asyncio.shield(self._done)

    async def _rejoin(self, dial: asyncio.Future[Link]) -> str | None:
        """Take a finished reconnect attempt's link and greet the host: None if that worked,
        else why not, to try again; raises when trying again cannot help."""
        try:
            self.link = dial.result()
            await self._greet()
            return None
        except HostAway as exc:
            raise HostGone(f"lost the connection to the host: {exc}") from exc
        except SecurityError:
            raise  # a tampering server: trying again would only meet it again
        except RateLimited as exc:
            return exc.message
        except (WrongToken, Refused) as exc:
            raise HostGone(f"lost the connection to the host, and cannot rejoin: {exc}") from exc
        except BeachError as exc:
            if self.link is not None:
                await self.link.close()
                self.link = None
            return exc.message

    def _banner(self, text: str) -> None:
        """A line across the bottom of the screen; the snapshot after reconnecting redraws it."""
        self._title(f"beach: {text}")
        if not self._drew:
            return
        cols, rows = self.term.size()
        line = f" beach: {printable(text, cols)} ".ljust(cols)[:cols]
        self.term.write(
            self.status_line.close() + f"\x1b7\x1b[{rows};1H\x1b[0;7m{line}\x1b[0m\x1b8".encode()
        )

    def _finish(self, code: int, line: str) -> None:
        if self._done is not None and not self._done.done():
            self.exit_line = line
            self._done.set_result(code)

    # -- frames from the host ------------------------------------------------------------------

    def _on_frame(self, kind: Frame, body: bytes) -> None:
        if self._drawing is not None:  # a large frame is still being drawn: keep the order
            if self._queued + len(body) > FRAME_QUEUE_MAX:
                log.info(
                    "more than %d bytes of frames waiting: asking for a fresh screen", self._queued
                )
                self._queue.clear()
                self._queued = 0
                self._resync()
            self._queue.append((kind, body))
            self._queued += len(body)
            return
        rest = self._guarded(kind, body)
        if rest is not None:
            self._drawing = asyncio.ensure_future(self._draw_rest(rest))

    def _guarded(self, kind: Frame, body: bytes) -> Iterator[bytes] | None:
        """Handle one frame; what is left of a large one to draw, if anything."""
        try:
            return self._handle_frame(kind, body)
        except ProtocolError as exc:  # a frame that breaks the wire format: the host is broken
            log.warning("bad frame from host: %s", exc)
            self._fail(ProtocolError(f"the host sent a malformed frame: {exc}"))
        except Exception as exc:  # showing output must never kill the channel
            self._render_failed(exc)
        return None

    async def _draw_rest(self, rest: Iterator[bytes] | None) -> None:
        """Draw a large frame a piece at a time, then the frames that queued behind it."""
        try:
            while rest is not None:
                try:
                    for piece in rest:
                        await asyncio.sleep(0)
                        self._show(piece)
                        if self._awaiting_snapshot:
                            break
                except Exception as exc:  # showing output must never kill the channel
                    self._render_failed(exc)
                rest = None
                while rest is None and self._queue:
                    kind, body = self._queue.popleft()
                    self._queued -= len(body)
                    rest = self._guarded(kind, body)
        finally:
            self._drawing = None

    def _stop_drawing(self) -> None:
        if self._drawing is not None:
            self._drawing.cancel()
            self._drawing = None
        self._queue.clear()
        self._queued = 0

    def _fail(self, exc: BeachError) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _render_failed(self, exc: Exception) -> None:
        """Output we could not show: forget the screen state and ask for a fresh screen. The
        same failure again and again (a snapshot that replays it) ends the session instead."""
        now = time.monotonic()
        if now - self._last_failure > RENDER_QUIET:
            self._failures = 0
        self._failures += 1
        self._last_failure = now
        what = printable(f"{type(exc).__name__}: {exc}", 120)
        log.warning("cannot show the host's output (%s); asking for a fresh screen", what)
        if self._failures >= RENDER_FAILURES:
            self._fail(
                ProtocolError(
                    f"cannot show the host's output ({what}), {self._failures} times in a row; "
                    "giving up"
                )
            )
            return
        self._resync()
        if self.pty_size is not None:  # forget the cursor and modes it followed
            self.viewport = Viewport(self.term.size(), self.pty_size)
            self._fit()  # the scroll region again, for the fresh screen

    def _resync(self) -> None:
        """Drop what is not shown yet and wait for a fresh screen; OUTPUT until then is skipped
        without inflating it (a SNAPSHOT starts a deflate stream of its own)."""
        self._awaiting_snapshot = True
        self.echo.stale()
        self.term.discard_pending()
        if self.link is not None:
            self.link.send(encode_frame(Frame.SNAPSHOT))

    def _handle_frame(self, kind: Frame, body: bytes) -> Iterator[bytes] | None:
        if kind == Frame.HELLO and self._hello is None:
            self._hello = decode_hello(body)
            if compression.FEATURE in self._hello.features:
                self._decompress = compression.decoder()
            self.pty_size = (self._hello.cols, self._hello.rows)
            self.viewport = Viewport(self.term.size(), self.pty_size)
            speaks = ECHO_FEATURE in self._hello.features and self._hello.role == "rw"
            self.echo.start(self.pty_size, speaks and self.term.out_is_tty)
            self.echo.window(self._fits())
            self._hello_event.set()
        elif kind in (Frame.OUTPUT, Frame.SNAPSHOT):
            if kind == Frame.SNAPSHOT:
                self._awaiting_snapshot = False
                self.echo.fresh_screen()
                if self._decompress is not None:
                    self._decompress = compression.decoder()
            elif self._awaiting_snapshot:
                return None
            pieces = iter((body,)) if self._decompress is None else self._inflate(body)
            for piece in pieces:
                self._show(piece)
                if self._awaiting_snapshot:
                    return None
                if len(piece) >= INFLATE_PIECE:
                    return pieces  # maybe more: drawn with the loop running in between
        elif kind == Frame.ACK:
            self.inputs.ack(decode_ack(body))
        elif kind == Frame.ECHO:
            offset, flags = decode_echo(body)
            if self._drew and not self._awaiting_snapshot:
                self.term.write(self.echo.echo(offset, flags))
        elif kind == Frame.RESIZE:
            self.pty_size = decode_resize(body)
            self.term.write(self.echo.resized(self.pty_size))
            self._fit(pty=self.pty_size)
        elif kind == Frame.EXIT:
            code, sig = decode_exit(body)
            reason = exit_reason(body)  # the host ended the session itself (--max-duration...)
            if reason is not None:
                self._finish(code, f"session ended by the host: {printable(reason, 200)}")
            else:
                self._finish(code, f"the host's shell {ExitStatus(code, sig).describe()}")
        elif kind == Frame.NOTICE:
            self._title(body.decode(errors="replace"))
        return None

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        """One frame's output, inflated a piece at a time and never past FRAME_INFLATE_MAX."""
        z, total = self._decompress, 0
        while True:
            try:
                piece = z.decompress(data, INFLATE_PIECE)
            except zlib.error as exc:
                raise BadOutput(f"bad deflate stream: {exc}") from exc
            total += len(piece)
            if total > FRAME_INFLATE_MAX:
                raise BadOutput(f"a frame inflates past {FRAME_INFLATE_MAX} bytes")
            if z.eof:
                raise BadOutput("the deflate stream ended")
            data = z.unconsumed_tail
            if not piece and data:
                raise BadOutput("the deflate stream stalled")
            if piece:
                yield piece
            if not data and len(piece) < INFLATE_PIECE:
                return

    def _show(self, data: bytes) -> None:
        self._draw(data)
        if self.term.pending > LOCAL_BACKLOG and not self._awaiting_snapshot:
            # Our own terminal is far behind: skip to the present rather than replay.
            log.info("terminal %d bytes behind: asking for a fresh screen", self.term.pending)
            self._resync()

    def _draw(self, data: bytes) -> None:
        if not self._drew:
            self._drew = True
            self.term.write(PUSH_TITLE)
            self._title(f"beach: {self.token.session}, {self.link.path}")
            self._fit()
        shown = self.viewport.filter(data) if self.viewport else data
        self.term.write(
            self.status_line.before_output()
            + self.echo.before_output()
            + shown
            + self.echo.after_output(data)
        )
        if self._path_said is None:  # the first output after connecting
            self._say_path()

    def _say_path(self) -> None:
        """How we are connected, in one line across the screen and in the title: once the
        path is decided (an early-relay link takes a moment), and again when a reconnect
        lands on another."""
        link = self.link
        if link is None or not link.settled or not self._drew:
            return
        said = f"connected, {link.path}" + (" (no direct path)" if link.through_server else "")
        if said == self._path_said:
            return
        again = self._path_said is not None
        self._path_said = said
        text = f"beach: {'re' if again else ''}{said}"
        log.info("%s", text)
        self._title(text)
        if not self.opts.quiet and self.term.out_is_tty and self._fits() and self.viewport:
            self.status_line.show(text, *self.viewport.pty)

    def _status_replay(self, cols: int, rows: int) -> bytes | None:
        """What makes the status line's model of the shared screen (the first snapshot
        wiped the screen: the model knows every row)."""
        history = self.echo.history
        return None if history is None else history.model_replay(STATUS_PRIME, cols, rows)

    def _fit(
        self, window: tuple[int, int] | None = None, pty: tuple[int, int] | None = None
    ) -> None:
        """Sizes changed (or first drawing): adjust the scroll region, say if we are too small."""
        if self.viewport is None or not self._drew:
            return
        self.term.write(self.echo.window(False) + self.viewport.resize(window, pty))
        self.echo.window(self._fits())
        notice = self.viewport.notice()
        if notice is not None or self._told_small:
            self._told_small = notice is not None
            self._title(notice or "beach: your window fits the shared terminal")

    def _want_echo(self, on: bool) -> None:
        if self.link is not None:
            self.link.send_control(encode_echo_wanted(on))

    def _fits(self) -> bool:
        """Our window holds the whole PTY (a smaller one is cut off: no guesses there)."""
        if self.viewport is None:
            return False
        (wc, wr), (pc, pr) = self.viewport.window, self.viewport.pty
        return wc >= pc and wr >= pr

    def _title(self, text: str) -> None:
        if self.term.out_is_tty and self._raw:
            self.term.set_title(printable(text, 200))

    # -- keystrokes ------------------------------------------------------------------------------

    def _on_input(self, data: bytes) -> None:
        if self.echo.awaits_answer:  # the terminal's cursor report, for predictive echo
            data = self._take_answer(data)
            if not data:
                return
        out: bytes | None = data  # the usual keystroke, unless it holds the detach prefix
        if self._prefix or DETACH_PREFIX in data:
            out = self._detach_filter(data)
        if not out:  # detached, or only the prefix so far
            return
        if self.token.role == "view":
            self._tell_viewer()
            return
        offset = self.inputs.add(out)
        if offset is None:
            self._title("beach: the host is not taking keystrokes; some were dropped")
        elif self.link is not None:  # else they wait in the log for the reconnect
            self._send_input(offset, out)
            if self._drew and not self._awaiting_snapshot:
                self.term.write(self.echo.key(out, offset + len(out), self.link.pace.rtt))

    def _tell_viewer(self) -> None:
        """Once: a line across the screen saying keystrokes go nowhere (the title may not
        show: tmux and many setups never do). It is the status line, put back cell for cell;
        where that cannot be exact (vim, busy output) the bottom row is written over and
        VIEW_ONLY_SHOWN later a fresh screen puts it back as the host has it."""
        if self._told_view_only or not self._drew or self.viewport is None:
            return
        self._told_view_only = True
        self._title("beach: view-only: your keystrokes are not sent")
        if self.term.out_is_tty and self._fits():
            if not self.status_line.showing:  # (one that shows just takes the new text)
                self.status_line.on_shown = self._viewer_line_shown
            self.status_line.show(VIEW_ONLY_LINE, *self.viewport.pty)
        else:
            self._viewer_line_over_the_row()

    def _viewer_line_shown(self, ok: bool) -> None:
        self.status_line.on_shown = lambda ok: None
        if not ok and self._done is not None and not self._done.done():
            self._viewer_line_over_the_row()

    def _viewer_line_over_the_row(self) -> None:
        if self.viewport is None:
            return
        cols = min(self.viewport.window[0], self.viewport.pty[0])
        row = min(self.viewport.window[1], self.viewport.pty[1])
        text = VIEW_ONLY_LINE[:cols].ljust(cols).encode()
        self.term.write(
            self.status_line.close()  # (the fresh screen puts back the rest)
            + b"\x1b7\x1b[%d;1H\x1b[0;7m%s\x1b[0m\x1b8" % (row, text)
        )
        self._resync_later = asyncio.get_running_loop().call_later(VIEW_ONLY_SHOWN, self._resync)

    def _take_answer(self, data: bytes) -> bytes:
        m = CURSOR_REPORT.search(data)
        if m is None:
            return data
        self.echo.answer(int(m.group(1)), int(m.group(2)))
        return data[: m.start()] + data[m.end() :]

    def _detach_filter(self, data: bytes) -> bytes | None:
        """Strip the detach prefix (Ctrl-]) from keystrokes; None once the person detached."""
        out = bytearray()
        for byte in data:
            if self._prefix:
                self._prefix = False
                if byte in DETACH_KEYS:
                    self._finish(0, "detached; the session goes on without you")
                    return None
                if byte != DETACH_PREFIX:
                    out.append(DETACH_PREFIX)
                out.append(byte)
            elif byte == DETACH_PREFIX:
                self._prefix = True
            else:
                out.append(byte)
        return bytes(out)

    def _send_input(self, offset: int, data: bytes) -> None:
        for i in range(0, len(data), INPUT_CHUNK):
            self.link.send(encode_input(offset + i, data[i : i + INPUT_CHUNK]))

    def _on_resize(self, cols: int, rows: int) -> None:
        showing = self.status_line.showing
        self.status_line.forget()  # the terminal reflowed what it shows, our line too
        if self.link is not None:
            self.link.send(encode_resize(cols, rows))
        self._fit(window=(cols, rows))
        if showing and self.link is not None:  # nothing else would put its row back
            self._resync()


async def join_and_report(opts: JoinOptions, terminal: LocalTerminal) -> int:
    session = JoinSession(opts, terminal)
    code = await session.run()
    if session.exit_line:
        eprint(f"beach: {session.exit_line}")
    return code
