"""Typing the scripted session (predict_script.py) at a person's pace into a terminal, and
timing each key from its write until its glyph is on that terminal's screen at the expected
cell: a pyte screen of everything the terminal shows, guesses included (a guess counts when it
is drawn).

A key counts as drawn at the first change of the prompt's row or the cursor at which the row
reads the prompt plus the text the line editor holds after that key, with the cursor where it
puts it; the earliest such key after the last one drawn is taken, so a later key's state that
repeats an earlier one (a typo, then backspace) does not count early. Keys whose own state
never shows (two answered in one screen update) are drawn when a later key's state is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyte

from .env import COLS, PROMPT, ROWS
from .errors import BenchError
from .links.screen import ScreenTap
from .predict_script import Key, keys_of, pauses
from .ptys import PtyProcess

RECORD_MAX = 4 << 20  # bytes of a terminal's output kept for the byte-for-byte comparison
BEFORE_ENTER = 0.25  # s: a person reads the line once it shows, then presses Enter
CLEAR = b"\x0c"  # Ctrl-L
THINK = 0.4  # s: ...and reads the output before typing the next line
KEEP_WRONG = 5  # wrong lines kept per typed line
Predicate = Callable[[pyte.Screen], bool]


@dataclass
class Line:
    """One line being typed: its keys, when each was written and when its state showed."""

    row: int
    keys: list[Key]
    written: list[float] = field(default_factory=list)
    drawn: list[float | None] = field(default_factory=list)
    done: int = -1  # the last key drawn
    last: tuple[str, int, int] | None = None  # the row and cursor at the last look
    complete: threading.Event = field(default_factory=threading.Event)

    updates: int = 0  # changes of the row or cursor while the line is typed
    wrong: int = 0  # ...to a state no key written so far leads to
    back: int = 0  # ...back to an older state than one already drawn
    seen_wrong: list[str] = field(default_factory=list)  # the first few, for the report

    def judge(self, state: tuple[str, int, int]) -> None:
        """Count one screen update of this line: right, wrong, or going back."""
        self.updates += 1
        blank = Key(b"", "", 0)
        states = [_expected(self.row, k) for k in [blank, *self.keys[: len(self.written)]]]
        newest = max((i - 1 for i, st in enumerate(states) if st == state), default=None)
        if newest is None:
            self.wrong += 1
            if len(self.seen_wrong) < KEEP_WRONG:
                expected = (PROMPT + self.keys[len(self.written) - 1].text).rstrip()
                self.seen_wrong.append(f"{state[0]!r} at col {state[2]} (typed: {expected!r})")
        elif newest < self.done:
            self.back += 1

    @property
    def last_glyph(self) -> int:
        return max(i for i, key in enumerate(self.keys) if key.glyph)


@dataclass
class Looks:
    """The far end's screen updates over a session (Line's counts, summed)."""

    updates: int = 0
    wrong: int = 0
    back: int = 0
    wrong_lines: list[str] = field(default_factory=list)

    def add(self, line: Line) -> None:
        self.updates += line.updates
        self.wrong += line.wrong
        self.back += line.back
        self.wrong_lines += line.seen_wrong


@dataclass
class Sample:
    seconds: float
    first: bool  # the line's first key (after a fresh prompt)


class GlyphTap(ScreenTap):
    """A ScreenTap that also times the keys of the line being typed and, while recording,
    keeps every byte the terminal shows."""

    def __init__(self, pty: PtyProcess) -> None:
        self.line: Line | None = None
        self.recorded: bytearray | None = None
        self._waits: list[tuple[Predicate, threading.Event]] = []
        super().__init__(pty.name, pty.fd, pty._read_once, COLS, ROWS)
        pty._tap = self  # (as links/screen.py's screen_tap installs one)

    def feed(self, data: bytes, now: float) -> None:
        super().feed(data, now)
        with self._lock:
            if self.recorded is not None and len(self.recorded) + len(data) <= RECORD_MAX:
                self.recorded += data
            self._look(now)

    def _look(self, now: float) -> None:
        """(Under the lock.) Conditions awaited, and keys of the typed line that now show."""
        for pred, event in [w for w in self._waits if w[0](self.screen)]:
            event.set()
            self._waits.remove((pred, event))
        line = self.line
        if line is None or not line.written:
            return
        cursor = self.screen.cursor
        text = _row(self.screen, line.row)
        state = (text, cursor.y, cursor.x)
        if state == line.last:
            return
        line.last = state
        if line.keys[len(line.written) - 1].glyph:  # (after Enter the cursor leaves the row)
            line.judge(state)
        for j in range(line.done + 1, len(line.written)):
            key = line.keys[j]
            if key.glyph and state == _expected(line.row, key):
                for i in range(line.done + 1, j + 1):
                    line.drawn[i] = now
                line.done = j
                if j == line.last_glyph:
                    line.complete.set()
                return

    def until(self, pred: Predicate, timeout: float, what: str) -> None:
        """Wait until the screen satisfies `pred`."""
        event = threading.Event()
        with self._lock:
            if pred(self.screen):
                return
            self._waits.append((pred, event))
        if not event.wait(timeout):
            with self._lock:
                if (pred, event) in self._waits:
                    self._waits.remove((pred, event))
                screen = "\n".join(line.rstrip() for line in self.screen.display if line.strip())
            raise BenchError(f"{self.name}: no {what} within {timeout:.0f} s; screen:\n{screen}")

    def begin(self, line: Line | None) -> None:
        with self._lock:
            self.line = line

    def wrote(self, line: Line, at: float) -> None:
        """A key of `line` is about to be written (so its state can be seen from now on)."""
        with self._lock:
            line.written.append(at)
            line.drawn.append(None)

    def cursor_row(self) -> int:
        with self._lock:
            return int(self.screen.cursor.y)

    def record(self) -> None:
        """Keep every byte from now on (up to RECORD_MAX)."""
        with self._lock:
            self.recorded = bytearray()

    def recording(self) -> bytes:
        """What was kept since record(); keeping stops."""
        with self._lock:
            kept, self.recorded = bytes(self.recorded or b""), None
        return kept


def _row(screen: pyte.Screen, row: int) -> str:
    line = screen.buffer[row]
    return "".join(line[x].data for x in range(screen.columns)).rstrip()


def _expected(row: int, key: Key) -> tuple[str, int, int]:
    return ((PROMPT + key.text).rstrip(), row, len(PROMPT) + key.cursor)


def prompt_below(row: int) -> Predicate:
    """A fresh prompt, the cursor right after it, below `row` (-1: anywhere)."""

    def pred(screen: pyte.Screen) -> bool:
        y = screen.cursor.y
        return y > row and screen.cursor.x == len(PROMPT) and _row(screen, y) == PROMPT.rstrip()

    return pred


def type_session(
    pty: PtyProcess, tap: GlyphTap, lines: tuple[str, ...], timeout: float
) -> tuple[list[Sample], Looks]:
    """Ctrl-L (bash clears the screen; a control key, so no guess is made or counted), then
    each scripted line at a person's pace; a sample per key with a glyph, and how the screen
    got there."""
    tap.until(prompt_below(-1), timeout, "prompt")
    pty.write(CLEAR)
    tap.until(lambda s: prompt_below(-1)(s) and s.cursor.y == 0, timeout, "cleared screen")
    row, samples, looks = -1, [], Looks()
    all_keys = [keys_of(text) for text in lines]
    waits = iter(pauses(sum(len(k) for k in all_keys)))
    for text, keys in zip(lines, all_keys, strict=True):
        tap.until(prompt_below(row), timeout, f"prompt for {text!r}")
        time.sleep(THINK)
        line = Line(tap.cursor_row(), keys)
        row = line.row
        tap.begin(line)
        due = time.perf_counter()
        for key in keys:
            due += next(waits)
            if not key.glyph:  # Enter: once the whole line shows
                if not line.complete.wait(timeout):
                    raise BenchError(f"{tap.name}: {text!r} not all drawn within {timeout:.0f} s")
                time.sleep(BEFORE_ENTER)
            else:
                time.sleep(max(due - time.perf_counter(), 0.0))
            at = time.perf_counter()
            tap.wrote(line, at)
            pty.write(key.data)
        looks.add(line)
        for i, key in enumerate(keys):
            drawn = line.drawn[i]
            if key.glyph and drawn is not None:
                samples.append(Sample(drawn - line.written[i], i == 0))
    tap.until(prompt_below(row), timeout, "the last prompt")
    tap.begin(None)
    return samples, looks
