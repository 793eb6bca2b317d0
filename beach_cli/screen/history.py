"""Screen state for late and lagging joiners, kept off the hot path.

Rather than emulate a terminal on every byte (pyte manages ~0.5 MB/s here, far below what a PTY
produces), this keeps the recent output since the last point where the screen was wiped, and
which screen (main or alternate) is active. Replaying that into a freshly reset terminal
reproduces the current screen for ordinary shell and full-screen programs. Feeding costs a few
substring searches per chunk.

Output that is dropped (before a wipe, or beyond the size limit) still leaves its lasting
state behind: the colours in effect, private modes and the scroll region are kept and replayed
ahead of the remaining bytes.
"""

from __future__ import annotations

import re

HISTORY_LIMIT = 512 * 1024

# Entering / leaving the alternate screen (xterm 1049, 1047, 47).
_ALT_ON = re.compile(rb"\x1b\[\?(?:1049|1047|47)h")
_ALT_OFF = re.compile(rb"\x1b\[\?(?:1049|1047|47)l")
# A full wipe after which nothing earlier is visible: RIS, or clear-screen (cursor home first).
_WIPE = re.compile(rb"\x1bc|\x1b\[H\x1b\[2J|\x1b\[2J\x1b\[H|\x1b\[H\x1b\[J")
# Sequences whose effect outlives the text around them: colours, private modes, scroll region.
_SGR = re.compile(rb"\x1b\[([0-9;:]*)m")
_MODES = re.compile(rb"\x1b\[\?([0-9;]+)[hl]|\x1b\[[0-9;]*r")
# An escape sequence that may continue in the next chunk (CSI or a short ESC sequence).
_PARTIAL = re.compile(rb"\x1b(?:\[[0-9;:?<=>!]*|[()#%]?)?\Z")
MAX_SGR = 16
MAX_MODES = 64

# Put a terminal into a known state before replaying: soft reset (which on some terminals also
# turns autowrap off: turn it back on), main screen, default attributes, cursor home, cleared.
RESET = b"\x1b[!p\x1b[?7h\x1b[?1049l\x1b[0m\x1b[H\x1b[2J"
CLEAR_SCROLLBACK = b"\x1b[3J"
SAVE_CURSOR = b"\x1b7"
UNKNOWN = "\ue000"  # in a model: a cell whose content beach never saw (model_replay)


class _Screen:
    """Bytes since the last wipe, plus the lasting state of everything before them."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.sgr: list[bytes] = []  # SGR sequences since the last attribute reset
        self.modes: dict[bytes, bytes] = {}  # private modes and scroll region, last one wins
        self.wiped = False  # a wipe came: nothing from before it shows

    def clear(self) -> None:
        self.data.clear()
        self.sgr.clear()
        self.modes.clear()

    def absorb(self, dropped: bytes) -> None:
        """Remember the lasting state set by bytes that are about to be dropped."""
        if b"\x1b" not in dropped:
            return
        # Colours: only what follows the last full reset matters, so skip to it rather than
        # walk every SGR of a colourful build log.
        reset = max(dropped.rfind(b"\x1b[0m"), dropped.rfind(b"\x1b[m"))
        if reset != -1:
            self.sgr.clear()
        for m in _SGR.finditer(dropped, max(reset, 0)):
            if m.group(1) in (b"", b"0"):
                self.sgr.clear()
            else:
                self.sgr = [*self.sgr[-(MAX_SGR - 1) :], m.group()]
        # Private modes and scroll regions are rare: walk them all.
        if b"\x1b[?" not in dropped and b"r" not in dropped:
            return
        for m in _MODES.finditer(dropped):
            seq = m.group()
            key = seq[:-1] if m.group(1) is not None else b"r"
            self.modes.pop(key, None)
            if len(self.modes) < MAX_MODES:
                self.modes[key] = seq

    def wipe_at(self, data: bytes, start: int) -> bytes:
        """A wipe at data[start:]: keep the lasting state, drop the visible bytes."""
        self.absorb(bytes(self.data) + data[:start])
        self.data.clear()
        self.wiped = True
        return data[start:]

    def trim(self, limit: int, now: bool = False) -> None:
        # Unless `now`, let the buffer reach twice the limit before cutting it back: deleting
        # from the front of a bytearray moves everything behind, so cutting on every chunk
        # would copy the whole history per PTY read (measured: +57% on a host's `cat`).
        if len(self.data) <= (limit if now else 2 * limit):
            return
        cut = self._boundary(len(self.data) - limit)
        self.absorb(bytes(self.data[:cut]))
        del self.data[:cut]

    def _boundary(self, cut: int) -> int:
        """Where to start the kept history, at or after `cut`: a line's start, else an escape
        sequence's or just after a string's BEL, never inside one. A line is looked for near
        the cut only: the next newline may be megabytes on (2 MB of titles, then one line),
        and cutting there would keep nothing to show. Failing all that nearby (inside a 1 MB
        title), the first boundary of any kind further on."""
        end = cut + _BOUNDARY_WINDOW
        nl = self.data.find(b"\n", cut, end)
        if nl != -1:
            return nl + 1
        near = self._first(cut, end, b"\x1b", b"\x07")
        if near is not None:
            return near
        far = self._first(cut, len(self.data), b"\x1b", b"\x07", b"\n")
        return cut if far is None else far

    def _first(self, start: int, end: int, *marks: bytes) -> int | None:
        """The first boundary of `marks` in data[start:end]: at an ESC, after a BEL or LF."""
        found = []
        for mark in marks:
            i = self.data.find(mark, start, end)
            if i != -1:
                found.append(i if mark == b"\x1b" else i + 1)
        return min(found, default=None)

    def replay(self) -> bytes:
        return b"".join(self.modes.values()) + b"".join(self.sgr) + bytes(self.data)

    def replay_recent(self, limit: int) -> bytes:
        """replay() of about the last `limit` bytes, cut where trim() would cut, the rest
        leaving only its lasting state; this screen is left as it is."""
        if len(self.data) <= limit:
            return self.replay()
        cut = self._boundary(len(self.data) - limit)
        part = _Screen()
        part.sgr, part.modes = list(self.sgr), dict(self.modes)
        part.absorb(bytes(self.data[:cut]))
        part.data = self.data[cut:]
        return part.replay()


# How far past the cut trim() looks for a boundary to start the kept history at.
_BOUNDARY_WINDOW = 64 * 1024


class ScreenHistory:
    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.limit = limit
        self._main = _Screen()  # main-screen output since its last wipe
        self._alt = _Screen()  # alternate-screen output since it was entered
        self.alt_active = False
        self._alt_enter = b"\x1b[?1049h"
        self._carry = b""  # an escape sequence split across reads, completed by the next one

    def feed(self, data: bytes) -> None:
        if self._carry:
            data, self._carry = self._carry + data, b""
        if b"\x1b" not in data:  # the common case: plain text, no mode changes
            self._append(data)
            return
        tail = _PARTIAL.search(data, max(len(data) - 32, 0))
        if tail is not None:
            data, self._carry = data[: tail.start()], data[tail.start() :]
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
                if m.group().startswith(b"\x1b[?1049"):
                    # 1049 saves the cursor on entry and restores it on exit: replay the save.
                    self._main.data += SAVE_CURSOR
            else:
                self._alt.clear()
                self._main.data += m.group()
            pos = m.end()

    def _append(self, data: bytes) -> None:
        screen = self._alt if self.alt_active else self._main
        # Substring checks first: far cheaper than the regex on escape-heavy output.
        maybe = b"\x1b" in data and (
            b"\x1b[2J" in data or b"\x1bc" in data or b"\x1b[H\x1b[J" in data
        )
        wipes = list(_WIPE.finditer(data)) if maybe else []
        if wipes:
            data = screen.wipe_at(data, wipes[-1].start())
        screen.data += data
        screen.trim(self.limit)

    def model_replay(
        self, limit: int, cols: int, rows: int, start: tuple[int, int] | None = None
    ) -> bytes | None:
        """Bytes that make a fresh model (screen/model.py) of the main screen from about the
        last `limit` bytes, or None where its rows could be off the terminal's: the alternate
        screen (a model has one buffer), a cut inside a line (the wrap would differ), or too
        few lines after the cut to have scrolled them into place (the cursor's row before it
        is unknown). Output never wiped began wherever the terminal's cursor was, `start`
        (row, col) if known: rows above it are filled with UNKNOWN, which the model's user
        must not trust, until the output scrolls them away."""
        if self.alt_active:
            return None
        data = self._main.data
        if len(data) > limit:
            cut = self._main._boundary(len(data) - limit)
            if cut < 2 or data[cut - 2 : cut] != b"\r\n" or data.count(b"\n", cut) < rows:
                return None
        elif not self._main.wiped and data.count(b"\n") < rows:
            if start is None:
                return None
            row, col = min(start[0], rows - 1), min(start[1], cols - 1)
            prefix = UNKNOWN.encode() * (row * cols + col) + b"\x1b[%d;%dH" % (row + 1, col + 1)
            return RESET + prefix + self._main.replay() + self._carry
        return self.snapshot(clear_scrollback=False, recent=limit)

    def snapshot(self, clear_scrollback: bool = True, recent: int | None = None) -> bytes:
        """Bytes that redraw the current screen on a terminal in any state. With `recent`, the
        main screen's history is cut to about that many bytes: what a joiner skipping ahead on
        a slow path needs is the screen, not the scrollback. (Output since the last wipe that
        is longer than that is line after line, whose last lines are the screen; the
        alternate screen is always replayed whole.)"""
        self._main.trim(self.limit, now=True)
        self._alt.trim(self.limit, now=True)
        main = self._main.replay() if recent is None else self._main.replay_recent(recent)
        out = RESET + (CLEAR_SCROLLBACK if clear_scrollback else b"") + main
        if self.alt_active:
            out += self._alt_enter + self._alt.replay()
        return out + self._carry
