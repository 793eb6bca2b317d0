"""The local terminal of `beach host` or `beach join`: raw mode, a non-blocking stdout with a
bounded buffer, stdin and window-size events. Everything it changes is restored on `restore()`,
which is idempotent and also registered with atexit as a last resort.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import os
import re
import signal
import struct
import sys
import termios
import tty
from collections.abc import Callable

from .text import printable

DEFAULT_SIZE = (80, 24)
ASK_CURSOR = b"\x1b[6n"  # DSR: the terminal answers ESC [ row ; col R on our input
CURSOR_REPORT = re.compile(rb"\x1b\[(\d{1,5});(\d{1,5})R")


def get_winsize(fd: int) -> tuple[int, int] | None:
    """(cols, rows) of the terminal on fd, or None if fd is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (cols, rows) if cols and rows else None


class LocalTerminal:
    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.is_tty = os.isatty(stdin_fd)
        self.out_is_tty = os.isatty(stdout_fd)
        self._saved_attrs: list | None = None
        self._saved_flags: dict[int, int] = {}
        self._out = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._on_drain: Callable[[], None] | None = None
        self._reading = False
        atexit.register(self.restore)

    # -- modes -------------------------------------------------------------------------------------

    def size(self) -> tuple[int, int]:
        return get_winsize(self.stdout_fd) or get_winsize(self.stdin_fd) or DEFAULT_SIZE

    def enter_raw(self) -> None:
        if self.is_tty and self._saved_attrs is None:
            self._saved_attrs = termios.tcgetattr(self.stdin_fd)
            tty.setraw(self.stdin_fd, termios.TCSANOW)

    def _set_nonblocking(self, fd: int) -> None:
        if fd not in self._saved_flags:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            self._saved_flags[fd] = flags
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    def restore(self) -> None:
        """Undo raw mode and non-blocking flags. Safe to call any number of times."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                self.stop_input()
            with contextlib.suppress(Exception):
                loop.remove_writer(self.stdout_fd)
        self._writing = False
        # Best effort: flush what is left, blocking, so the last screen is not cut short.
        for fd, flags in self._saved_flags.items():
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        self._saved_flags.clear()
        if self._out:
            data, self._out = bytes(self._out), bytearray()
            with contextlib.suppress(OSError):
                os.write(self.stdout_fd, data[-65536:])
        if self._saved_attrs is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.stdin_fd, termios.TCSADRAIN, self._saved_attrs)
            self._saved_attrs = None

    # -- output ------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._out)

    def write(self, data: bytes) -> None:
        """Queue bytes for stdout; never blocks the loop."""
        if not data:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._set_nonblocking(self.stdout_fd)
        self._out += data
        self._drained.clear()
        if not self._writing:
            self._flush()

    def discard_pending(self) -> None:
        """Drop output not yet written (a fresh screen is on its way to replace it)."""
        self._out.clear()

    def on_drain(self, callback: Callable[[], None] | None) -> None:
        self._on_drain = callback

    def _flush(self) -> None:
        while self._out:
            try:
                n = os.write(self.stdout_fd, self._out[: 1 << 20])
            except BlockingIOError:
                break
            except OSError:  # the terminal went away (hangup): nothing more to show
                self._out.clear()
                break
            del self._out[:n]
        assert self._loop is not None
        if self._out and not self._writing:
            self._loop.add_writer(self.stdout_fd, self._flush)
            self._writing = True
        elif not self._out:
            if self._writing:
                self._loop.remove_writer(self.stdout_fd)
                self._writing = False
            self._drained.set()
            if self._on_drain is not None:
                self._on_drain()

    async def drain(self, timeout: float = 2.0) -> None:
        # asyncio.timeout: wait_for (Python 3.11) can swallow a cancellation of the caller.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._drained.wait()

    def set_title(self, text: str) -> None:
        """The window title (OSC 2), with anything that could end the sequence early removed."""
        safe = printable(text, 200)
        self.write(f"\x1b]2;{safe}\x07".encode())

    # -- input -------------------------------------------------------------------------------------

    def start_input(self, on_input: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        self._set_nonblocking(self.stdin_fd)

        def readable() -> None:
            try:
                data = os.read(self.stdin_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.stop_input()
                on_eof()
                return
            on_input(data)

        self._loop.add_reader(self.stdin_fd, readable)
        self._reading = True

    def stop_input(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.stdin_fd)
            self._reading = False

    def on_resize(self, callback: Callable[[int, int], None]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGWINCH, lambda: callback(*self.size()))


def eprint(text: str) -> None:
    """A line for the person at this terminal, safe in raw mode (explicit CR LF)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text.replace("\n", "\r\n") + "\r\n")
        sys.stderr.flush()
