"""Fit the shared terminal into a joiner's window of another size.

- A taller window: the shared program knows only the PTY's rows, so the joiner's terminal gets
  a scroll region of exactly those rows. Text then scrolls where it scrolls at the host, and a
  program resetting its scroll region ("ESC [ r") is held to the PTY's rows too.
- A wider window: lines wrap at the PTY's width (see wrap.py).
- A smaller window (a viewer, or `--size host`): nothing can make it fit, so the joiner is told
  in its terminal title.
"""

from __future__ import annotations

import re

from .sequences import param, split_cut
from .wrap import WrapAt

# Set or reset the scroll region: ESC [ top ; bottom r (both optional).
_DECSTBM = re.compile(rb"\x1b\[(\d*)(?:;(\d*))?r")
# Resets that also reset the scroll region to the whole window.
_RESETS = re.compile(rb"\x1bc|\x1b\[!p")


class Viewport:
    def __init__(self, window: tuple[int, int], pty: tuple[int, int]) -> None:
        self.window = window
        self.pty = pty
        self._carry = b""
        self._wrap: WrapAt | None = None
        self._update_wrap()

    def _update_wrap(self) -> None:
        if self.window[0] <= self.pty[0]:
            self._wrap = None
        elif self._wrap is None:
            self._wrap = WrapAt(*self.pty)
        else:  # keep following the cursor; only the edges move
            self._wrap.cols, self._wrap.rows = self.pty
            self._wrap.col = min(self._wrap.col, self.pty[0])

    @property
    def clamps(self) -> bool:
        return self.window[1] > self.pty[1]

    def _region(self) -> bytes:
        return b"\x1b[1;%dr" % self.pty[1]

    def resize(
        self, window: tuple[int, int] | None = None, pty: tuple[int, int] | None = None
    ) -> bytes:
        """New sizes; returns bytes to write that put the joiner's terminal right."""
        self.window = window or self.window
        self.pty = pty or self.pty
        self._update_wrap()
        # DECSTBM homes the cursor: save and restore it around the change.
        region = self._region() if self.clamps else b"\x1b[r"
        return b"\x1b7" + region + b"\x1b8"

    def notice(self) -> str | None:
        (wc, wr), (pc, pr) = self.window, self.pty
        if wc < pc or wr < pr:
            return (
                f"beach: your window ({wc}x{wr}) is smaller than the shared terminal "
                f"({pc}x{pr}): some of it is cut off"
            )
        return None

    def filter(self, data: bytes) -> bytes:
        """Wrap at the PTY's width; hold scroll-region changes to the PTY's rows."""
        if self._wrap is not None:
            data = self._wrap.feed(data)
        if self._carry:  # (kept only while clamping; given back once that stops)
            data, self._carry = self._carry + data, b""
        if not self.clamps:
            return data
        if b"\x1b" not in data:
            return data
        if self._wrap is None:  # (the wrap carries cut sequences itself: its output has none)
            data, self._carry = split_cut(data)  # however far back the cut sequence starts
        rows = self.pty[1]

        def clamp(m: re.Match[bytes]) -> bytes:
            top = min(param(m.group(1), 1), rows)  # never parsed into a giant int
            bottom = param(m.group(2) or b"")
            bottom = rows if bottom == 0 or bottom > rows else bottom
            return b"\x1b[%d;%dr" % (top, bottom)

        data = _DECSTBM.sub(clamp, data)
        return _RESETS.sub(lambda m: m.group() + self._region(), data)
