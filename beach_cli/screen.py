"""Screen state for late and lagging joiners, kept off the hot path.

Rather than emulate a terminal on every byte (pyte manages ~0.5 MB/s here, far below what a PTY
produces), this keeps the recent output since the last point where the screen was wiped, and
which screen (main or alternate) is active. Replaying that into a freshly reset terminal
reproduces the current screen for ordinary shell and full-screen programs. Feeding costs a few
substring searches per chunk.
"""

from __future__ import annotations

import re

HISTORY_LIMIT = 512 * 1024

# Entering / leaving the alternate screen (xterm 1049, 1047, 47).
_ALT_ON = re.compile(rb"\x1b\[\?(?:1049|1047|47)h")
_ALT_OFF = re.compile(rb"\x1b\[\?(?:1049|1047|47)l")
# A full wipe after which nothing earlier is visible: RIS, or clear-screen (cursor home first).
_WIPE = re.compile(rb"\x1bc|\x1b\[H\x1b\[2J|\x1b\[2J\x1b\[H|\x1b\[H\x1b\[J")

# Put the joiner's terminal into a known state before replaying: soft reset, main screen,
# default attributes, cursor home, screen and scrollback cleared.
RESET = b"\x1b[!p\x1b[?1049l\x1b[0m\x1b[H\x1b[2J"
CLEAR_SCROLLBACK = b"\x1b[3J"


class ScreenHistory:
    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.limit = limit
        self._main = bytearray()  # main-screen output since its last wipe
        self._alt = bytearray()  # alternate-screen output since it was entered
        self.alt_active = False
        self._alt_enter = b"\x1b[?1049h"

    def feed(self, data: bytes) -> None:
        if b"\x1b" not in data:  # the common case: plain text, no mode changes
            self._append(data)
            return
        pos = 0
        while pos < len(data):
            pattern = _ALT_OFF if self.alt_active else _ALT_ON
            m = pattern.search(data, pos)
            end = m.start() if m else len(data)
            self._append(data[pos:end])
            if m is None:
                break
            self.alt_active = not self.alt_active
            if self.alt_active:
                self._alt_enter = m.group()
                self._alt.clear()
            else:
                self._alt.clear()
                # Leaving the alternate screen restores the main one as it was.
                self._main += m.group()
            pos = m.end()

    def _append(self, data: bytes) -> None:
        buf = self._alt if self.alt_active else self._main
        wipes = list(_WIPE.finditer(data))
        if wipes:
            buf.clear()
            data = data[wipes[-1].start() :]
        buf += data
        if len(buf) > self.limit:
            # Keep the newest bytes, starting on a line boundary so no escape is cut in half.
            cut = len(buf) - self.limit
            nl = buf.find(b"\n", cut)
            del buf[: (nl + 1) if nl != -1 else cut]

    def snapshot(self, clear_scrollback: bool = True) -> bytes:
        """Bytes that redraw the current screen on a terminal in any state."""
        out = RESET + (CLEAR_SCROLLBACK if clear_scrollback else b"") + bytes(self._main)
        if self.alt_active:
            out += self._alt_enter + self._alt
        return out
