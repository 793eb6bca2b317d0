"""`beach host --approve`: ask the host, one joiner at a time, whether to let them in.

The question is drawn on the host's alternate screen, so leaving it gives back the host's screen
exactly as the terminal kept it; output the program writes meanwhile is held and written
afterwards. While a question shows, the host's keystrokes answer it and never reach the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from .terminal import LocalTerminal

HELD_LIMIT = 1024 * 1024


class ApprovalPrompt:
    def __init__(
        self, term: LocalTerminal, redraw: Callable[[], bytes], alt_active: Callable[[], bool]
    ):
        self.term = term
        self._redraw = redraw  # bytes that repaint the whole shared screen
        self._alt_active = alt_active
        self._queue: deque[tuple[str, asyncio.Future[bool]]] = deque()
        self._held = bytearray()
        self._overflow = False
        self._opened_on_alt = False

    @property
    def active(self) -> bool:
        return bool(self._queue)

    async def ask(self, question: str, timeout: float) -> bool:
        """True if the host pressed y; False on anything else, or after `timeout`."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((question, fut))
        if len(self._queue) == 1:
            self._open()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self._answer(fut, False)
            return False
        finally:
            self._answer(fut, False)  # cancelled or timed out: never leave a question behind

    def hold(self, data: bytes) -> None:
        """Program output that arrives while the question shows."""
        if len(self._held) + len(data) > HELD_LIMIT:
            self._overflow = True
            self._held.clear()
        elif not self._overflow:
            self._held += data

    def key(self, data: bytes) -> None:
        if not self._queue:
            return
        fut = self._queue[0][1]
        first = data[:1].lower()
        if first == b"y":
            self._answer(fut, True)
        elif first in (b"n", b"\r", b"\x1b", b"\x03"):
            self._answer(fut, False)

    def _open(self) -> None:
        self._opened_on_alt = self._alt_active()
        self._held.clear()
        self._overflow = False
        self.term.write(b"\x1b[?1049h")
        self._draw()

    def _draw(self) -> None:
        question = self._queue[0][0]
        cols, rows = self.term.size()
        text = f" beach: {question} [y/N] "[: max(cols - 1, 10)]
        more = f" ({len(self._queue) - 1} more waiting)" if len(self._queue) > 1 else ""
        self.term.write(
            b"\x1b[?25h\x1b[H\x1b[2J"
            + f"\x1b[{max(rows // 2, 1)};1H\x1b[7m{text}\x1b[0m{more}".encode()
        )

    def _answer(self, fut: asyncio.Future[bool], ok: bool) -> None:
        if fut.done():
            return
        fut.set_result(ok)
        with contextlib.suppress(ValueError):
            self._queue.remove(next(item for item in self._queue if item[1] is fut))
        if self._queue:
            self._draw()
            return
        self._close()

    def _close(self) -> None:
        self.term.write(b"\x1b[H\x1b[2J\x1b[?1049l")
        if self._opened_on_alt or self._overflow:
            self.term.write(self._redraw())
        else:
            self.term.write(bytes(self._held))
        self._held.clear()
