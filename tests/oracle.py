"""A terminal emulator to check screens against: pyte, plus xterm's alternate screen.

pyte ignores the alternate screen (private modes 47/1047/1049) entirely, so `XtermScreen`
implements mode 1049 the way xterm does (charproc.c, `srm_OPT_ALTBUF_CURSOR`): set = save
cursor, switch to a cleared alternate buffer; reset = switch back to the main buffer (if on the
alternate one), then restore the cursor, unconditionally.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyte
from pyte.screens import StaticDefaultDict

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


def cells(screen: pyte.Screen, cols: int, rows: int) -> list[list[tuple[Any, ...]]]:
    """Characters and attributes of the top-left cols x rows, one tuple per cell."""
    return [
        [
            (c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.reverse)
            for c in (screen.buffer[y][x] for x in range(cols))
        ]
        for y in range(rows)
    ]


def assert_same_screen(truth: pyte.Screen, seen: pyte.Screen) -> None:
    """`seen` shows what `truth` shows, cell by cell, with the cursor in the same place.
    `seen` may be larger (a joiner's bigger window): its top-left part is compared."""
    cols, rows = truth.columns, truth.lines
    want = [line.rstrip() for line in truth.display]
    got = [line[:cols].rstrip() for line in seen.display[:rows]]
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
