"""Predictive echo on a joiner's terminal: when to model the screen and show guesses, and the
bytes that draw them over the host's output and take them back.

The host's output is written to the terminal as it comes; guesses (join/predict.py) are drawn
over it and taken back before the next output, so the terminal shows exactly the host's
screen whenever no guess is drawn. Nothing is added at all unless the round trip makes it
worth it (`--predict auto`): on a fast link the output is byte for byte the host's.

- Modeling costs CPU (pyte), so the model is made only while guesses show (the round trip
  above SHOW_ON, or `--predict always`) and fed only interactive output: more than
  FEED_BUDGET bytes a second (a build, a `cat`) and the model is dropped, and made again from
  the recent output (screen/history.py, which is cheap to keep) once output calms down.
- A model made from the recent output may not have the terminal's cursor row (long lines
  wrapped before the cut, a cursor moved across it): before it is used, the terminal is asked
  where its cursor is (DSR), and only a model that agrees is guessed against. Guesses touch
  only the cursor's row, whose text came after the last line break.
- Guesses show above SHOW_ON of round trip and stop at SHOW_OFF; above UNDERLINE_ON they are
  underlined, until UNDERLINE_OFF (mosh's thresholds).
- The host says in its ECHO when the PTY reads a password (no guesses until it stops) and
  when someone else typed (every guess goes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..screen.history import ScreenHistory
from ..screen.model import ScreenModel, sgr_of
from ..terminal import ASK_CURSOR
from ..wire.frames import ECHO_OTHERS, ECHO_SECRET
from .predict import Predictor

log = logging.getLogger("beach.join")

MODES = ("auto", "always", "never")
SHOW_ON, SHOW_OFF = 0.060, 0.040
UNDERLINE_ON, UNDERLINE_OFF = 0.160, 0.100
FEED_BUDGET = 64 * 1024  # bytes of output a second the model may be fed (pyte: ~0.5 MB/s)
PRIME = 32 * 1024  # bytes of recent output a fresh model starts from
HISTORY = 2 * PRIME  # kept for it (the host keeps more: it redraws scrollback too)
UNDERLINE = b"\x1b[4m"
ASKS = 3  # times a fresh model asks before it waits for the next one
ANSWER_WAIT = 2.0  # s for the terminal's answer


def _cup(row: int, col: int) -> bytes:
    return b"\x1b[%d;%dH" % (row + 1, col + 1)


class PredictiveEcho:
    def __init__(self, mode: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = mode
        self._clock = clock
        # Kept in every mode (it is cheap): the status line is made from it too.
        self.history: ScreenHistory | None = ScreenHistory(HISTORY)
        self.model: ScreenModel | None = None
        self.predictor = Predictor()
        self.size = (80, 24)  # the PTY's
        self.enabled = False  # the host speaks "echo", and we may type
        self.fits = True  # our window holds the whole PTY
        self.secret = False
        self.rtt: float | None = None
        self.showing = mode == "always"
        self.underline = False
        self._drawn: set[tuple[int, int]] = set()
        self._moved = False  # the terminal's cursor is at a guess, not the host's
        self._window_at = 0.0  # the feeding budget's one-second windows
        self._window_bytes = 0
        self._last_window = 0
        self.verified = False  # the model's cursor is the terminal's (it was asked, or is exact)
        self._asked: tuple[tuple[int, int], int, float] | None = None  # cursor, fed, when
        self._asks = 0
        self._shown_key = 0  # the newest keystroke counted as shown
        # Tells the host to send ECHOs (True) or stop (False); what it was told last.
        self.on_want: Callable[[bool], None] | None = None
        self._told: bool | None = None

    # -- the session's news ---------------------------------------------------------------------

    def start(self, size: tuple[int, int], enabled: bool) -> None:
        """A HELLO: the PTY's size, and whether the host judges our guesses."""
        self.size = size
        self.enabled = enabled and self.mode != "never"
        self._told = None  # a fresh host (or connection): tell it again
        self._drop()
        self._tell()

    def fresh_screen(self) -> None:
        """A SNAPSHOT starts: it redraws everything, guesses included."""
        self._drawn.clear()
        self._moved = False
        self.history = ScreenHistory(HISTORY)
        if self.model is not None or self._wanted():  # fed what the terminal is from here
            self.model = ScreenModel(*self.size)
            self.verified = True
            self._asked = None
        self.predictor.reset()

    def stale(self) -> None:
        """Output is being skipped (a fresh screen is on its way): the model cannot follow."""
        self._drawn.clear()
        self._moved = False
        self._drop()

    def resized(self, size: tuple[int, int]) -> bytes:
        out = self._erase()
        self.size = size
        self._drop()
        return out

    def window(self, fits: bool) -> bytes:
        out = self._erase()
        self.fits = fits
        self.predictor.reset()
        return out

    def finish(self) -> bytes:
        """Leaving: the host's screen, without guesses."""
        return self._erase()

    # -- output, keystrokes, the host's ECHO ----------------------------------------------------

    def before_output(self) -> bytes:
        return self._erase()

    def after_output(self, data: bytes) -> bytes:
        if self.history is None:
            return b""
        self.history.feed(data)
        if self._over_budget(len(data)):
            if self.model is not None:
                log.debug("predictive echo: output too fast to model; paused")
                self._drop()
            return b""
        if self.model is not None:
            try:
                self.model.feed(data)
            except Exception as exc:  # pyte's own limits: the terminal is fine, the model not
                log.debug("predictive echo: the model could not follow (%s); dropped", exc)
                self._drop()
                return b""
            if self.model.lost:  # made again (and checked) from the recent output when needed
                self._drop()
        return self._draw()

    def key(self, data: bytes, end: int, rtt: float | None) -> bytes:
        """Keystrokes sent to the host, ending at input offset `end`."""
        out = self._erase()
        self._follow(rtt)
        if not self.enabled or (self.model is None and not self._ensure_model()):
            return out
        model = self.model
        assert model is not None
        if not self.verified:
            self.predictor.reset()
            return out + self._ask()
        may = self.fits and not self.secret and model.at_rest
        self.predictor.key(model, data, end, may)
        return out + self._draw()

    # -- is the model's cursor the terminal's? -------------------------------------------------

    @property
    def awaits_answer(self) -> bool:
        """A cursor report on our input is the terminal's answer, not a keystroke."""
        return self._asked is not None and self._clock() - self._asked[2] < ANSWER_WAIT

    def _ask(self) -> bytes:
        model = self.model
        if model is None or not model.at_rest or self.awaits_answer or self._asks >= ASKS:
            return b""
        self._asks += 1
        self._asked = (model.cursor, model.fed, self._clock())
        return ASK_CURSOR

    def answer(self, row: int, col: int) -> None:
        """The terminal's cursor (1-based), as it answered ASK_CURSOR."""
        asked, self._asked = self._asked, None
        model = self.model
        if asked is None or model is None or model.fed != asked[1]:
            return  # output came in between: the next keystroke asks again
        if asked[0] == (row - 1, col - 1):
            self.verified = True
        else:
            log.debug("predictive echo: the model's cursor is not the terminal's; not guessing")
            self._asks = ASKS

    def echo(self, offset: int, flags: int) -> bytes:
        """The host answered our input before `offset`; its screen (the model) shows how."""
        self.secret = bool(flags & ECHO_SECRET)
        if self.model is None:
            return b""
        out = self._erase()
        if self.secret or flags & ECHO_OTHERS:
            self.predictor.reset()
        else:
            self.predictor.judge(self.model, offset)
        return out + self._draw()

    # -- when -------------------------------------------------------------------------------------

    def _follow(self, rtt: float | None) -> None:
        """The round trip decides (with hysteresis) whether guesses show and are underlined."""
        self.rtt = rtt
        if rtt is None:
            return
        if self.mode == "auto":
            if rtt > SHOW_ON:
                self.showing = True
            elif rtt <= SHOW_OFF:
                self.showing = False
        if rtt > UNDERLINE_ON:
            self.underline = True
        elif rtt < UNDERLINE_OFF:
            self.underline = False
        if not self._wanted() and self.model is not None:
            self._drop()
        self._tell()

    def _tell(self) -> None:
        want = self._wanted()
        if want != self._told and (want or self._told is not None) and self.on_want is not None:
            self._told = want
            self.on_want(want)

    def _wanted(self) -> bool:
        if not self.enabled:
            return False
        return self.mode == "always" or self.showing

    def _over_budget(self, n: int) -> bool:
        now = self._clock()
        if now - self._window_at >= 1.0:
            self._last_window = self._window_bytes if now - self._window_at < 2.0 else 0
            self._window_at, self._window_bytes = now, 0
        self._window_bytes += n
        return self._window_bytes > FEED_BUDGET or self._last_window > FEED_BUDGET

    def _ensure_model(self) -> bool:
        """Make the model from the recent output, if guesses are wanted and output is calm."""
        if self.history is None or not self._wanted() or self._over_budget(0):
            return False
        model = ScreenModel(*self.size)
        model.feed(self.history.snapshot(clear_scrollback=False, recent=PRIME))
        self.model = model
        self.verified = False
        self._asked, self._asks = None, 0
        self.predictor.reset()
        return True

    def _drop(self) -> None:
        self.model = None
        self.verified = False
        self._asked = None
        self.predictor.reset()

    # -- drawing ----------------------------------------------------------------------------------

    def _erase(self) -> bytes:
        """Put back the host's cells where guesses are drawn, and its cursor and attributes."""
        if not self._drawn and not self._moved:
            return b""
        model = self.model
        self._moved = False
        if model is None:  # (dropped only after erasing, or for a fresh screen)
            self._drawn.clear()
            return b""
        out = bytearray()
        for row, col in sorted(self._drawn):
            out += _cup(row, col) + sgr_of(model.char(row, col)) + model.text(row, col).encode()
        self._drawn.clear()
        out += _cup(*model.cursor) + model.sgr_now()
        return bytes(out)

    def _draw(self) -> bytes:
        model = self.model
        if model is None or not self.showing or not model.at_rest or not model.plain:
            return b""
        guesses = self.predictor.visible(model)
        cursor = self.predictor.visible_cursor()
        if not guesses and (cursor is None or cursor == model.cursor):
            return b""
        out = bytearray()
        mark = UNDERLINE if self.underline else b""
        now = model.sgr_now()
        for (row, col), guess in sorted(guesses, key=lambda g: g[0]):
            sgr = now + mark if guess.typed else sgr_of(guess.attrs, self.underline)
            out += _cup(row, col) + sgr + guess.char.encode()
            self._drawn.add((row, col))
            if not guess.shown:
                guess.shown = True
                self._count_shown(guess.key)
        if cursor is not None and cursor != model.cursor:
            self._count_shown(self.predictor.cursor_key)
        out += _cup(*(cursor or model.cursor)) + now
        self._moved = True
        return bytes(out)

    def _count_shown(self, key: int) -> None:
        if key > self._shown_key:  # keys are numbered in order; each counts once
            self._shown_key = key
            self.predictor.stats.shown += 1

    def summary(self) -> str:
        s = self.predictor.stats
        return (
            f"{s.keys} keystrokes guessed at, {s.shown} shown before the host's echo, "
            f"{s.confirmed} cells confirmed, {s.wrong} shown wrong, {s.resets} resets"
        )
