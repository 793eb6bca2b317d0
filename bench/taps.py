"""Draining terminals: a `Tap` counts a terminal's output and timestamps markers in it; one
hub thread reads every tapped terminal (a thread per terminal would fight over the GIL and
slow the very streams being measured)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BenchError

TAIL = 8192  # bytes of recent output kept for marker search and error messages
KEEP = 256  # longest marker looked for (a marker may straddle two reads)


@dataclass
class Sighting:
    """When a marker was seen by a tap, and how many bytes the tap had read by then."""

    at: float
    total: int


class Watch:
    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.event = threading.Event()
        self.sighting: Sighting | None = None


class Tap:
    """One drained terminal. `read` returns bytes, b'' if nothing is ready, None at the end."""

    def __init__(
        self, name: str, fd: int, read: Callable[[], bytes | None], tail: bytes = b""
    ) -> None:
        self.name = name
        self.fd = fd
        self.read = read
        self.total = 0
        self.tail = tail
        self.eof = False
        self._watches: list[Watch] = []
        self._lock = threading.Lock()
        hub().add(self)

    def expect(self, marker: bytes, seen_ok: bool = False) -> Watch:
        """Register a marker before causing it; `wait` on the result. With `seen_ok`, a marker
        already in the recent output counts as seen."""
        if len(marker) > KEEP:
            raise ValueError("marker too long")
        watch = Watch(marker)
        with self._lock:
            if seen_ok and marker in self.tail:
                watch.sighting = Sighting(time.perf_counter(), self.total)
                watch.event.set()
            else:
                self._watches.append(watch)
        return watch

    def wait(self, watch: Watch, timeout: float) -> Sighting:
        if not watch.event.wait(timeout):
            with self._lock:
                if watch in self._watches:
                    self._watches.remove(watch)
            state = "closed" if self.eof else "open"
            raise BenchError(
                f"{self.name}: no {watch.marker!r} within {timeout:.1f} s "
                f"({self.total} bytes read, terminal {state}); last output: {self.tail[-300:]!r}"
            )
        assert watch.sighting is not None
        return watch.sighting

    def feed(self, data: bytes, now: float) -> None:
        with self._lock:
            self.total += len(data)
            window = self.tail[-KEEP:] + data
            self.tail = (self.tail + data)[-TAIL:]
            for watch in list(self._watches):
                if watch.marker in window:
                    watch.sighting = Sighting(now, self.total)
                    watch.event.set()
                    self._watches.remove(watch)

    def stop(self) -> None:
        """Stop draining; returns once the hub no longer touches this terminal."""
        hub().remove(self)


class Hub(threading.Thread):
    """The one thread that reads every tapped terminal."""

    def __init__(self) -> None:
        super().__init__(name="bench-taps", daemon=True)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._lock = threading.Lock()
        self._taps: dict[int, Tap] = {}
        self._changes: list[tuple[str, Tap, threading.Event]] = []

    def _change(self, op: str, tap: Tap) -> None:
        done = threading.Event()
        with self._lock:
            self._changes.append((op, tap, done))
        os.write(self._wake_w, b"x")
        if not done.wait(5.0):
            raise BenchError(f"tap hub did not {op} {tap.name}")

    def add(self, tap: Tap) -> None:
        self._change("add", tap)

    def remove(self, tap: Tap) -> None:
        self._change("remove", tap)

    def _apply(self, poller: select.poll) -> None:
        while True:
            try:
                if not os.read(self._wake_r, 4096):
                    break
            except BlockingIOError:
                break
        with self._lock:
            changes, self._changes = self._changes, []
        for op, tap, done in changes:
            if op == "add" and tap.fd not in self._taps:
                self._taps[tap.fd] = tap
                poller.register(tap.fd, select.POLLIN)
            elif op == "remove" and self._taps.get(tap.fd) is tap:
                del self._taps[tap.fd]
                poller.unregister(tap.fd)
            done.set()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    self._apply(poller)
                    continue
                tap = self._taps.get(fd)
                if tap is None:
                    continue
                data = tap.read()
                if data is None:  # the far side is gone: stop polling it
                    tap.eof = True
                    del self._taps[fd]
                    poller.unregister(fd)
                elif data:
                    tap.feed(data, time.perf_counter())


_hub: Hub | None = None
_hub_lock = threading.Lock()


def hub() -> Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
            _hub.start()
        return _hub


class RemoteTap:
    """A terminal drained by a process of its own (drain_program.py), which reports only the
    end markers (`BENCH-END-<n>:`): the same `expect`/`wait` as a Tap, for those markers.
    `total` is the byte count at the last marker reported."""

    PROGRAM = os.path.join(os.path.dirname(__file__), "drain_program.py")

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.total = 0
        self.tail = b"(drained by a separate process)"
        self.eof = False
        self._watches: list[Watch] = []
        self._seen: dict[bytes, Sighting] = {}
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, self.PROGRAM, str(fd)],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, name=f"drain-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            n, at, total = line.split()
            sighting = Sighting(float(at), int(total))
            marker = b"BENCH-END-" + n + b":"
            with self._lock:
                self.total = sighting.total
                self._seen[marker] = sighting
                for watch in [w for w in self._watches if w.marker == marker]:
                    watch.sighting = sighting
                    watch.event.set()
                    self._watches.remove(watch)
        self.eof = True

    @property
    def pid(self) -> int:
        return self._proc.pid

    def expect(self, marker: bytes, seen_ok: bool = False) -> Watch:
        if not re.fullmatch(rb"BENCH-END-\d+:", marker):
            raise ValueError("a remote tap only sees end markers")
        watch = Watch(marker)
        with self._lock:
            if seen_ok and marker in self._seen:
                watch.sighting = self._seen[marker]
                watch.event.set()
            else:
                self._watches.append(watch)
        return watch

    def wait(self, watch: Watch, timeout: float) -> Sighting:
        if not watch.event.wait(timeout):
            state = "closed" if self.eof else "open"
            raise BenchError(
                f"{self.name}: no {watch.marker!r} within {timeout:.1f} s "
                f"({self.total} bytes read by the last marker, terminal {state})"
            )
        assert watch.sighting is not None
        return watch.sighting

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
