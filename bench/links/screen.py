"""A tap that keeps the terminal's screen (pyte) and sees a marker when it is on the screen:
for mosh, whose client draws only what changed on the screen, so a marker's characters can
arrive apart (cursor moves between them) or never as one run of bytes."""

from __future__ import annotations

import codecs
import contextlib
import os
import time
from collections.abc import Callable

import pyte

from ..ptys import PtyProcess
from ..taps import Sighting, Tap, hub


class ScreenTap(Tap):
    def __init__(
        self, name: str, fd: int, read: Callable[[], bytes | None], cols: int, rows: int
    ) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.Stream(self.screen)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # A terminal answers a program's queries on its input: `beach join` asks where the
        # cursor is (DSR) before it trusts a model of the screen for predictive echo.
        self.screen.write_process_input = self._answer
        super().__init__(name, fd, read)

    def _answer(self, text: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, text.encode())

    def _on_screen(self, marker: bytes) -> bool:
        text = marker.decode()
        return any(text in line for line in self.screen.display)

    def _seen_before(self, marker: bytes) -> Sighting | None:
        return Sighting(time.perf_counter(), self.total) if self._on_screen(marker) else None

    def absorb(self, data: bytes) -> None:
        """Output read by someone else while this tap was stopped: onto the screen too."""
        with self._lock:
            self.stream.feed(self.decoder.decode(data))

    def resume(self, pty: PtyProcess) -> None:
        """Drain `pty` again after PtyProcess.untap(), keeping the screen as it is."""
        pty._tap = self
        hub().add(self)

    def feed(self, data: bytes, now: float) -> None:
        with self._lock:
            self.total += len(data)
            self.tail = (self.tail + data)[-4096:]
            self.stream.feed(self.decoder.decode(data))
            if self._watches:
                self._fulfil(self._on_screen, Sighting(now, self.total))


def screen_tap(pty: PtyProcess, cols: int, rows: int) -> ScreenTap:
    """Drain `pty` through a ScreenTap. PtyProcess.tap() makes a plain Tap; this one is
    installed in its place the same way (the attribute PtyProcess.untap and close look at)."""
    tap = ScreenTap(pty.name, pty.fd, pty._read_once, cols, rows)
    pty._tap = tap
    return tap
