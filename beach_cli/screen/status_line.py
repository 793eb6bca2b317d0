"""A transient line of beach's own across a terminal that shows the shared screen: the host's
notices (someone joined, left, guessed wrong) and a joiner's word on its connection. It goes
on the bottom row, or the top one while the cursor is on the bottom row (where the person is
typing). The shared program never sees it, and the row is put back cell for cell after.

What the row held is known from a model (screen/model.py, pyte) made from the recent output
(screen/history.py) when the line is drawn, in a worker thread and only once output has
paused: pyte is slow, and must not compete with the output. Output that comes while the model
is made voids it (the work stops within a piece; busy output gets GIVE_UP s of tries); output
that comes while the line shows takes it down first, so the model is still
exactly what the terminal had under it. Where the model cannot be exact (the alternate screen,
an odd character set, attributes past what it can say again, the cursor waiting to wrap, a row
shown before the output began: history.py's UNKNOWN), there is no line: the caller says it
another way (the title, a fresh screen).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from ..text import printable
from .history import UNKNOWN
from .model import ScreenModel, sgr_of

log = logging.getLogger("beach.screen")

SHOWN = 5.0  # seconds a line stays (unless output takes it down sooner)
PRIME = 32 * 1024  # bytes of recent output the model is made from
MAX_REPLAY = 96 * 1024  # more (a long alternate-screen history): no line, pyte would take long
QUIET = 0.2  # s without output before a model is made (pyte would compete with the output)
GIVE_UP = 3.0  # s of busy output after which the line is not drawn at all
PIECE = 4096  # bytes fed to the model between checks that no output voided it
STYLE = b"\x1b[0;7m"  # reverse video, like tmux's status line


def _cup(row: int, col: int) -> bytes:
    return b"\x1b[%d;%dH" % (row + 1, col + 1)


def _make_model(
    replay: bytes, cols: int, rows: int, stale: Callable[[], bool]
) -> ScreenModel | None:
    """The model, or None as soon as `stale()` says output voided it (in a worker thread:
    a piece at a time, so output that comes meanwhile wastes at most one piece of pyte)."""
    model = ScreenModel(cols, rows)
    for at in range(0, len(replay), PIECE):
        if stale():
            return None
        model.feed(replay[at : at + PIECE])
    return model


def row_bytes(model: ScreenModel, row: int) -> bytes:
    """Bytes that draw `row` of the model again, from its first column, in its attributes:
    to its last written cell, then erased in default attributes (as a cleared row is)."""
    out = bytearray(_cup(row, 0))
    sgr = b""
    end = model.line_end(row)
    col = 0
    while col < end:
        char = model.char(row, col)
        if char.data == "":  # the right half of a wide character, drawn with its left half
            col += 1
            continue
        want = sgr_of(char)
        if want != sgr:
            out += want
            sgr = want
        out += (char.data or " ").encode()
        col += 1
    out += b"\x1b[0m\x1b[K"
    return bytes(out)


class StatusLine:
    def __init__(
        self,
        write: Callable[[bytes], None],
        replay: Callable[[int, int], bytes | None],
        shown: float = SHOWN,
    ) -> None:
        self._write = write  # to the terminal, in order with the shared output
        self._replay = replay  # (cols, rows): bytes that make its model (None: not known)
        self.shown = shown
        self._generation = 0  # output seen so far: a model made before it is stale
        self._output_at = 0.0  # the last output (loop time)
        self._model: ScreenModel | None = None  # the screen under the line, while it shows
        self._row = 0
        self._timer: asyncio.TimerHandle | None = None
        self._making: asyncio.Task[None] | None = None
        self._text = ""
        self._cols = 0
        self.on_shown: Callable[[bool], None] = lambda ok: None

    @property
    def showing(self) -> bool:
        return self._model is not None

    def show(self, text: str, cols: int, rows: int) -> None:
        """Draw `text` across the bottom (or top) row of a cols x rows shared screen for
        `shown` seconds, as soon as the model under it is made. A line already showing just takes
        the new text; the newest text wins while a model is being made. Whether it could be
        drawn exactly is `on_shown(True/False)` (False: say it another way)."""
        self._text = text
        if self._model is not None:
            self._draw()
        elif self._making is None or self._making.done():
            self._making = asyncio.get_running_loop().create_task(self._make(cols, rows))

    async def _make(self, cols: int, rows: int) -> None:
        ok = False
        loop = asyncio.get_running_loop()
        give_up = loop.time() + GIVE_UP
        while loop.time() < give_up:
            quiet = self._output_at + QUIET - loop.time()
            if quiet > 0:  # output is flowing: wait for a pause
                await asyncio.sleep(quiet)
                continue
            generation = self._generation
            replay = self._replay(cols, rows)
            if replay is None or len(replay) > MAX_REPLAY:
                break
            try:
                model = await asyncio.to_thread(
                    _make_model, replay, cols, rows, functools.partial(self._stale, generation)
                )
            except Exception:  # a model that cannot be made is no line, never a crash
                log.debug("status line: no model", exc_info=True)
                break
            if model is None or generation != self._generation:
                continue  # output came meanwhile: after the next pause
            if model.plain and model.at_rest and not model.lost and rows >= 2:
                # The bottom row, unless the cursor is there (a prompt at the bottom, where
                # the person is looking and typing): then the top one.
                row = rows - 1 if model.cursor[0] != rows - 1 else 0
                if not any(model.text(row, c) == UNKNOWN for c in range(cols)):
                    self._model, self._row, self._cols = model, row, cols
                    self._draw()
                    ok = True
            break
        self.on_shown(ok)

    def _stale(self, generation: int) -> bool:
        return generation != self._generation

    def _draw(self) -> None:
        line = f" {printable(self._text, self._cols)} ".ljust(self._cols)[: self._cols]
        self._write(_cup(self._row, 0) + STYLE + line.encode() + self._back())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.shown, self._expire)

    def before_output(self) -> bytes:
        """Called before shared output is written: the bytes that take the line down first
        (empty when none shows)."""
        self._generation += 1
        self._output_at = time.monotonic()
        return self._take_down()

    def close(self) -> bytes:
        """Leaving (or giving the screen to something else): the line's row as it was, if one
        shows; a line still being made is dropped."""
        self._generation += 1
        if self._making is not None:
            self._making.cancel()
        return self._take_down()

    def forget(self) -> None:
        """The terminal changed under us (a resize reflows it): the model says nothing true
        any more, so nothing is put back; the program redraws on its own."""
        self._generation += 1
        self._cancel()
        self._model = None

    def _expire(self) -> None:
        self._timer = None
        out = self._take_down()
        if out:
            self._write(out)

    def _take_down(self) -> bytes:
        if self._model is None:
            return b""
        self._cancel()
        out = row_bytes(self._model, self._row) + self._back()
        self._model = None
        return out

    def _back(self) -> bytes:
        """The cursor and attributes back where the output left them (not DECSC/DECRC: the
        program may have a cursor of its own saved there)."""
        assert self._model is not None
        row, col = self._model.cursor
        return _cup(row, col) + self._model.sgr_now()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
