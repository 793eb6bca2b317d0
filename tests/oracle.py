"""A terminal emulator to check screens against: pyte, made to behave like xterm where it
matters to beach.

- The alternate screen: pyte ignores private modes 47/1047/1049 entirely, so `XtermScreen`
  implements mode 1049 the way xterm does (charproc.c, `srm_OPT_ALTBUF_CURSOR`): set = save
  cursor, switch to a cleared alternate buffer; reset = switch back to the main buffer (if on
  the alternate one), then restore the cursor, unconditionally.
- The pending wrap: after a character lands in the last column, pyte parks the cursor one past
  the edge until the next character. xterm keeps it on the last column with a "wrap pending"
  flag that cursor movements, line feeds and erasures clear (and colours keep). `XtermScreen`
  moves the cursor back onto the last column before each of those operations.
- The saved cursor (DECSC/DECRC) is one slot that can be restored any number of times, as in
  xterm, not pyte's stack.
- Erasing the display erases every cell (pyte touches only cells that were written).
- Characters pushed past the right edge by an insertion are gone, as in xterm (pyte keeps one,
  which a later deletion pulls back into view).
- Wide characters that do not fit in the last column wrap to the next line first, as in xterm
  (pyte would draw half of one).
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyte
from pyte import modes
from pyte.screens import StaticDefaultDict
from wcwidth import wcwidth

COLS, ROWS = 80, 24
ALT_SCREEN = 1049


class XtermScreen(pyte.Screen):
    """pyte plus xterm's alternate screen with cursor save/restore (mode 1049)."""

    def __init__(self, columns: int = COLS, lines: int = ROWS) -> None:
        self.main_buffer: Any = None  # the main screen's buffer while the alternate one shows
        super().__init__(columns, lines)

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and ALT_SCREEN in modes:
            self.save_cursor()
            if self.main_buffer is None:
                self.main_buffer = self.buffer
                self.buffer = defaultdict(lambda: StaticDefaultDict(self.default_char))
            self.erase_in_display(2)
            modes = tuple(m for m in modes if m != ALT_SCREEN)
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and ALT_SCREEN in modes:
            if self.main_buffer is not None:
                self.buffer, self.main_buffer = self.main_buffer, None
                self.dirty.update(range(self.lines))
            self.restore_cursor()
            modes = tuple(m for m in modes if m != ALT_SCREEN)
        super().reset_mode(*modes, **kwargs)

    def reset(self) -> None:
        self.main_buffer = None
        super().reset()

    def select_graphic_rendition(self, *attrs: int, **kwargs: Any) -> None:
        if not kwargs.get("private"):  # ESC [ > 4 ; 2 m (vim's key modes) sets no attribute
            super().select_graphic_rendition(*attrs)

    def save_cursor(self) -> None:
        self.savepoints.clear()  # xterm has one save slot, not pyte's stack
        super().save_cursor()

    def restore_cursor(self) -> None:
        kept = list(self.savepoints)  # and restoring does not use it up
        super().restore_cursor()
        self.savepoints[:] = kept
        if kept and not kept[-1].wrap:
            self.mode.discard(modes.DECAWM)  # pyte only ever turns autowrap back on
        self.cursor = copy.copy(self.cursor)  # pyte hands out the saved cursor object itself

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        # pyte erases only cells that were ever written; erase every cell, as a terminal does.
        rows = {0: range(self.cursor.y + 1, self.lines), 1: range(self.cursor.y)}.get(
            how, range(self.lines)
        )
        for y in rows:
            line = self.buffer[y]
            for x in range(self.columns):
                line[x] = self.cursor.attrs
        super().erase_in_display(how, *args, **kwargs)

    def insert_characters(self, count: int | None = None) -> None:
        super().insert_characters(count)
        line = self.buffer[self.cursor.y]
        for x in [x for x in line if x >= self.columns]:  # pyte keeps one cell past the edge
            del line[x]

    def draw(self, data: str) -> None:
        for char in data:
            if (
                wcwidth(char) == 2
                and self.cursor.x == self.columns - 1
                and modes.DECAWM in self.mode
            ):
                self.carriage_return()
                self.linefeed()
            super().draw(char)
            if self.cursor.x == self.columns and modes.DECAWM not in self.mode:
                self.cursor.x = self.columns - 1  # without autowrap xterm stays on the edge


def _clears_pending_wrap(name: str) -> Any:
    method = getattr(XtermScreen, name)

    def wrapper(self: XtermScreen, *args: Any, **kwargs: Any) -> Any:
        if self.cursor.x >= self.columns:
            self.cursor.x = self.columns - 1
        return method(self, *args, **kwargs)

    wrapper.__name__ = name
    return wrapper


for _name in (
    "linefeed",
    "index",
    "reverse_index",
    "backspace",
    "tab",
    "cursor_up",
    "cursor_up1",
    "cursor_down",
    "cursor_down1",
    "cursor_forward",
    "cursor_back",
    "erase_in_line",
    "erase_in_display",
    "erase_characters",
    "insert_characters",
    "delete_characters",
):
    setattr(XtermScreen, _name, _clears_pending_wrap(_name))


def render_text(text: str, cols: int, rows: int) -> XtermScreen:
    screen = XtermScreen(cols, rows)
    pyte.Stream(screen).feed(text)
    return screen


def render_cast(path: Path, tail: int | None = None) -> XtermScreen:
    """The screen an asciicast v2 recording ends on. With `tail`, only the last `tail`
    characters of output are rendered, from a line start (pyte manages ~0.5 MB/s: for long
    scrolling output whose lines each stand alone, the tail draws the same screen)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    screen = XtermScreen(header["width"], header["height"])
    stream = pyte.Stream(screen)
    events = [json.loads(line) for line in lines[1:]]
    if tail is not None:
        assert all(kind == "o" for _, kind, _ in events), "tail rendering needs a fixed size"
        text = "".join(data for _, _, data in events)
        stream.feed(line_tail(text, tail))
        return screen
    for _, kind, data in events:
        if kind == "o":
            stream.feed(data)
        elif kind == "r":
            cols, rows = (int(n) for n in data.split("x"))
            screen.resize(rows, cols)
    return screen


def line_tail(text: str, size: int) -> str:
    if len(text) <= size:
        return text
    start = text.index("\n", len(text) - size) + 1
    return text[start:]


def cell(c: Any) -> tuple[Any, ...]:
    """What a person sees of a cell: a blank shows only its background (and reverse)."""
    if c.data in ("", " "):  # "" is the right half of a wide character
        return (" ", c.bg, c.reverse)
    return (c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.reverse)


def cells(screen: pyte.Screen, cols: int, rows: int) -> list[list[tuple[Any, ...]]]:
    """What shows in the top-left cols x rows, one tuple per cell."""
    return [[cell(screen.buffer[y][x]) for x in range(cols)] for y in range(rows)]


def text_lines(screen: pyte.Screen, cols: int, rows: int) -> list[str]:
    """The text of the top-left cols x rows (pyte's own `display` trips over a wide
    character whose first half was overwritten)."""
    return [
        "".join(screen.buffer[y][x].data or " " for x in range(cols)).rstrip() for y in range(rows)
    ]


def assert_same_screen(truth: pyte.Screen, seen: pyte.Screen) -> None:
    """`seen` shows what `truth` shows, cell by cell, with the cursor in the same place.
    `seen` may be larger (a joiner's bigger window): its top-left part is compared."""
    cols, rows = truth.columns, truth.lines
    want, got = text_lines(truth, cols, rows), text_lines(seen, cols, rows)
    assert got == want, "text differs:\n" + "\n".join(
        f"{i:2} want {w!r}\n   got  {g!r}"
        for i, (w, g) in enumerate(zip(want, got, strict=True))
        if w != g
    )
    want_cells, got_cells = cells(truth, cols, rows), cells(seen, cols, rows)
    for y in range(rows):
        for x in range(cols):
            assert got_cells[y][x] == want_cells[y][x], f"cell ({x},{y}) differs"
    assert (seen.cursor.x, seen.cursor.y) == (truth.cursor.x, truth.cursor.y), "cursor differs"


# What `beach join` writes on its way out; the screen to compare is the one just before.
LEAVE_MARK = "\x1b[?1049l\x1b[?25h\x1b[?1000l"


class Window:
    """A joiner's terminal as the test sees it: its transcript, cut where its size changed."""

    def __init__(self, proc: Any, cols: int, rows: int) -> None:
        self.proc = proc
        self.sizes: list[tuple[int, int, int]] = [(0, cols, rows)]

    def resize(self, cols: int, rows: int) -> None:
        # Taken while the screen is quiet, so the cut is exact.
        self.sizes.append((len(self.proc.transcript.getvalue()), cols, rows))
        self.proc.child.setwinsize(rows, cols)

    def screen(self, tail: int | None = None) -> pyte.Screen:
        text = self.proc.transcript.getvalue()
        if LEAVE_MARK in text:
            text = text[: text.index(LEAVE_MARK)]
        if tail is not None:
            assert len(self.sizes) == 1
            text = line_tail(text, tail)
        _, cols, rows = self.sizes[0]
        screen = render_text("", cols, rows)
        stream = pyte.Stream(screen)
        bounds = [pos for pos, _, _ in self.sizes[1:]] + [len(text)]
        start = 0
        for (_, cols, rows), end in zip(self.sizes, bounds, strict=True):
            if (cols, rows) != (screen.columns, screen.lines):
                screen.resize(rows, cols)
            stream.feed(text[start:end])
            start = end
        return screen


# The host's recorder writes from a thread, in batches: the file may trail the joiner's screen
# by a moment. The recording only grows, so it is read again until it matches or this passes.
CAST_CATCH_UP = 5.0
CAST_POLL = 0.05


def check(cast: Path, *windows: Window, tail: int | None = None) -> None:
    deadline = time.monotonic() + CAST_CATCH_UP
    while True:
        truth = render_cast(cast, tail)
        try:
            for w in windows:
                assert_same_screen(truth, w.screen(tail))
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(CAST_POLL)  # a file has no event to await: poll, within the deadline
