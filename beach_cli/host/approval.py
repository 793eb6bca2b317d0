"""`beach host --approve`: ask the host, one joiner at a time, whether to let them in.

The question is drawn on the host's alternate screen, so leaving it gives back the host's screen
exactly as the terminal kept it; output the program writes meanwhile is held and written
afterwards. While a question shows, the host's keystrokes answer it and never reach the shell.

The question (with the role the key exchange proved) comes first and is wrapped, never cut, at
any width; the details that only the server vouches for (the peer's id and address) follow,
made printable and marked as the server's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections import deque
from collections.abc import Callable

from ..terminal import LocalTerminal
from ..text import printable

HELD_LIMIT = 1024 * 1024


class ApprovalPrompt:
    def __init__(
        self, term: LocalTerminal, redraw: Callable[[], bytes], alt_active: Callable[[], bool]
    ):
        self.term = term
        self._redraw = redraw  # bytes that repaint the whole shared screen
        self._alt_active = alt_active
        self._queue: deque[tuple[str, str, asyncio.Future[bool]]] = deque()
        self._held = bytearray()
        self._overflow = False
        self._opened_on_alt = False

    @property
    def active(self) -> bool:
        return bool(self._queue)

    async def ask(self, question: str, untrusted: str, timeout: float) -> bool:
        """True if the host pressed y; False on anything else, or after `timeout`. `question` is
        beach's own text; `untrusted` is shown as reported by the server."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((question, untrusted, fut))
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
        fut = self._queue[0][2]
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
        question, untrusted, _ = self._queue[0]
        cols, rows = self.term.size()
        width = max(cols - 1, 8)
        asked = textwrap.wrap(f"beach: {question} [y/N]", width, break_on_hyphens=False)
        said = textwrap.wrap(
            f"{printable(untrusted, 120)} (as reported by the server)", width, max_lines=4
        )
        if len(self._queue) > 1:
            said += textwrap.wrap(f"({len(self._queue) - 1} more waiting)", width)
        top = max(rows // 2 - len(asked), 1)
        out = b"\x1b[?25h\x1b[H\x1b[2J"
        for i, line in enumerate(asked):
            out += f"\x1b[{top + i};1H\x1b[7m{line}\x1b[0m".encode()
        for i, line in enumerate(said):
            out += f"\x1b[{top + len(asked) + i};1H{line}".encode()
        self.term.write(out)

    def _answer(self, fut: asyncio.Future[bool], ok: bool) -> None:
        if fut.done():
            return
        fut.set_result(ok)
        with contextlib.suppress(ValueError):
            self._queue.remove(next(item for item in self._queue if item[2] is fut))
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
