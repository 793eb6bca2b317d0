"""Processes on pseudo-terminals whose master end the benchmark holds.

Two ways to read a master: synchronously from the calling thread (`read_until`, lowest latency,
used for keystroke timing) or through a `Tap` (taps.py) that drains it continuously, counts bytes
and timestamps markers (wherever a terminal must never stall, e.g. the host's own screen).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Sequence

from .errors import BenchError
from .taps import TAIL, RemoteTap, Tap

READ_SIZE = 1 << 16


def _set_ctty() -> None:
    # Runs in the child after setsid() and after the slave was dup'ed onto fd 0.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyProcess:
    """`argv` running with a new pseudo-terminal as its controlling terminal."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cols: int = 120,
        rows: int = 40,
        name: str = "",
    ) -> None:
        self.argv = list(argv)
        self.name = name or os.path.basename(self.argv[0])
        master, slave = os.openpty()
        try:
            set_winsize(master, cols, rows)
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                start_new_session=True,
                preexec_fn=_set_ctty,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self.tail = b""  # recent output seen by read_until (not by a tap)
        self.first_output_at: float | None = None  # perf_counter of the first byte read
        self._tap: Tap | RemoteTap | None = None
        self._closed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- writing ---------------------------------------------------------------------------------

    def write(self, data: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                n = 0
            view = view[n:]
            if view:
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name}: terminal input blocked for {timeout:.0f} s")
                select.select([], [self.fd], [], 0.05)

    # -- synchronous reading ---------------------------------------------------------------------

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        """Read until `marker` appears in the output; returns everything read."""
        if self._tap is not None:
            raise RuntimeError("read_until while a tap is draining this terminal")
        deadline = time.monotonic() + timeout
        got = bytearray()
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"{self.name}: no {marker!r} within {timeout:.1f} s; last output: "
                    f"{(self.tail + bytes(got))[-300:]!r}"
                )
            if not poller.poll(min(remaining, 0.5) * 1000):
                continue
            data = self._read_once()
            if data is None:
                raise BenchError(
                    f"{self.name}: terminal closed before {marker!r}; last output: "
                    f"{(self.tail + bytes(got))[-300:]!r}"
                )
            if not data:
                continue
            got += data
            self.tail = (self.tail + data)[-TAIL:]
            # Only output read by this call counts, including a marker split across reads.
            if marker in got[-(len(marker) + len(data)) :]:
                return bytes(got)

    def _read_once(self) -> bytes | None:
        """One read: bytes, b'' if nothing was ready, None at end of file."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError:  # EIO: the child side is closed
            return None
        if data and self.first_output_at is None:
            self.first_output_at = time.perf_counter()
        return data or None

    def discard(self) -> None:
        """Drop whatever output is waiting right now."""
        while True:
            data = self._read_once()
            if not data:
                return
            self.tail = (self.tail + data)[-TAIL:]

    # -- draining --------------------------------------------------------------------------------

    def tap(self) -> Tap:
        if self._tap is None:
            self._tap = Tap(self.name, self.fd, self._read_once, self.tail)
        return self._tap

    def remote_tap(self) -> RemoteTap:
        """Drain this terminal in a process of its own (see RemoteTap)."""
        if self._tap is None:
            self._tap = RemoteTap(self.name, self.fd)
        assert isinstance(self._tap, RemoteTap)
        return self._tap

    def untap(self) -> None:
        if self._tap is not None:
            self._tap.stop()
            self.tail = self._tap.tail
            self._tap = None

    # -- ending ----------------------------------------------------------------------------------

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, grace: float = 2.0) -> None:
        """Hang up, then terminate, then kill; always reaps the child and closes the fd."""
        if self._closed:
            return
        self._closed = True
        if self._tap is not None:
            self._tap.stop()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in its session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        with contextlib.suppress(OSError):
            os.close(self.fd)
