"""A child process on a pseudo-terminal: spawn, read, write, resize, exit status.

The master fd is non-blocking and driven by the event loop; reads coalesce whatever is ready
(up to READ_BURST) so a fast producer yields few, large chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct
import termios
from collections.abc import Callable

from ..errors import BeachError
from ..wire.frames import ExitStatus

log = logging.getLogger("beach.pty")

READ_SIZE = 64 * 1024
READ_BURST = 256 * 1024
WRITE_LIMIT = 1024 * 1024  # keystrokes queued for a child that is not reading them
EOF_GRACE = 0.5  # after the child exits, how long to wait for the rest of its output


def set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty(slave: int) -> Callable[[], None]:
    """Child-side setup: a new session whose controlling terminal is the PTY. Uses the slave's
    own fd, not 0: uvloop runs preexec_fn before it dup2()s the standard fds into place."""

    def setup() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    return setup


class PtyProcess:
    def __init__(self, proc: asyncio.subprocess.Process, master: int, cols: int, rows: int) -> None:
        self.proc = proc
        self.master = master
        self.cols, self.rows = cols, rows
        self._loop = asyncio.get_running_loop()
        self._on_output: Callable[[bytes], None] | None = None
        self._reading = False
        self._eof = asyncio.Event()
        self._pending = bytearray()
        self._writer = False  # a writable callback is registered (the child is slow to read)
        self.dropped_input = 0  # keystrokes beyond WRITE_LIMIT, reported at the end

    @classmethod
    async def spawn(
        cls, argv: list[str], cols: int, rows: int, env: dict[str, str] | None = None
    ) -> PtyProcess:
        try:
            master, slave = os.openpty()
        except OSError as exc:
            raise BeachError(f"cannot open a pseudo-terminal: {exc.strerror or exc}") from exc
        try:
            set_winsize(master, cols, rows)
            os.set_blocking(master, False)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                preexec_fn=_controlling_tty(slave),
                env=env,
                close_fds=True,
            )
        except BaseException as exc:
            # Every way out but success closes the master (cancellation included).
            os.close(master)
            if isinstance(exc, FileNotFoundError):
                raise BeachError(f"command not found: {argv[0]}") from exc
            if isinstance(exc, PermissionError):
                raise BeachError(f"cannot run {argv[0]}: permission denied") from exc
            if isinstance(exc, OSError):
                raise BeachError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
            if isinstance(exc, ValueError):  # e.g. a NUL byte in an argument
                raise BeachError(f"cannot run {argv[0]!r}: {exc}") from exc
            raise
        finally:
            os.close(slave)
        return cls(proc, master, cols, rows)

    # -- output ----------------------------------------------------------------------------------

    def start_reading(self, on_output: Callable[[bytes], None]) -> None:
        self._on_output = on_output
        self.resume_reading()

    def pause_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.master)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._eof.is_set() and self._on_output is not None:
            self._loop.add_reader(self.master, self._readable)
            self._reading = True

    def _readable(self) -> None:
        chunks: list[bytes] = []
        total = 0
        eof = False
        while total < READ_BURST:
            try:
                data = os.read(self.master, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:  # EIO: every slave fd is closed (the child is gone)
                if exc.errno != errno.EIO:
                    raise
                eof = True
                break
            if not data:
                eof = True
                break
            chunks.append(data)
            total += len(data)
        if chunks and self._on_output is not None:
            self._on_output(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof:
            self.pause_reading()
            self._eof.set()

    def settle(self) -> None:
        """Read now what the child has written so far (an echo acknowledgement goes behind it)."""
        if self._reading:
            self._readable()

    def secret_input(self) -> bool:
        """Canonical mode with echo off: the child reads a password (getpass, sudo, read -s)."""
        try:
            lflag = termios.tcgetattr(self.master)[3]
        except (termios.error, OSError):
            return False
        return bool(lflag & termios.ICANON) and not lflag & termios.ECHO

    # -- input -----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue keystrokes for the child without ever blocking the loop."""
        if self._eof.is_set():
            return
        if len(self._pending) + len(data) > WRITE_LIMIT:
            self.dropped_input += len(data)
            return
        was_empty = not self._pending
        self._pending += data
        if was_empty:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                n = os.write(self.master, self._pending)
            except BlockingIOError:
                break
            except OSError:  # the child is gone; its exit is reported elsewhere
                self._pending.clear()
                break
            del self._pending[:n]
        with contextlib.suppress(ValueError, OSError):
            if self._pending and not self._writer:
                self._loop.add_writer(self.master, self._flush)
                self._writer = True
            elif not self._pending and self._writer:
                self._loop.remove_writer(self.master)
                self._writer = False

    # -- control ---------------------------------------------------------------------------------

    def resize(self, cols: int, rows: int) -> None:
        if (cols, rows) == (self.cols, self.rows):
            return
        self.cols, self.rows = cols, rows
        # The kernel sends SIGWINCH to the PTY's foreground process group itself.
        with contextlib.suppress(OSError):
            set_winsize(self.master, cols, rows)

    async def wait(self) -> ExitStatus:
        rc = await self.proc.wait()
        # Collect output the child wrote just before exiting (a background job may hold the
        # slave open forever, so this wait is bounded).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._eof.wait(), EOF_GRACE)
        if self._reading:
            self._readable()
        if rc < 0:
            return ExitStatus(128 - rc, -rc)
        return ExitStatus(rc, None)

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGHUP)

    def kill(self) -> None:
        """For a child that outlives `terminate`: SIGKILL to its process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.dropped_input:
            log.warning(
                "%d bytes of keystrokes dropped: the program did not read them", self.dropped_input
            )
        self.pause_reading()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)
