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

from .env import stop_process
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


class Watched:
    """Markers awaited in a terminal's output: `expect` registers one before causing it, `wait`
    returns its sighting. Subclasses say what a marker may be, whether one was already seen,
    and what to add to a timeout's message; they call `_fulfil` as output comes in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.total = 0
        self.eof = False
        self._watches: list[Watch] = []
        self._lock = threading.Lock()

    def _check(self, marker: bytes) -> None:
        """Raise ValueError for a marker this terminal cannot look for."""

    def _seen_before(self, marker: bytes) -> Sighting | None:
        """(Under the lock.) A sighting of `marker` already in the output, if there is one."""
        return None

    def _detail(self) -> str:
        return ""

    def expect(self, marker: bytes, seen_ok: bool = False) -> Watch:
        """Register a marker before causing it; `wait` on the result. With `seen_ok`, a marker
        already seen counts."""
        self._check(marker)
        watch = Watch(marker)
        with self._lock:
            seen = self._seen_before(marker) if seen_ok else None
            if seen is not None:
                watch.sighting = seen
                watch.event.set()
            else:
                self._watches.append(watch)
        return watch

    def wait(self, watch: Watch, timeout: float) -> Sighting:
        if not watch.event.wait(timeout):
            with self._lock:
                if watch in self._watches:
                    self._watches.remove(watch)
            raise BenchError(
                f"{self.name}: no {watch.marker!r} within {timeout:.1f} s {self._detail()}"
            )
        assert watch.sighting is not None
        return watch.sighting

    def _fulfil(self, seen: Callable[[bytes], bool], sighting: Sighting) -> None:
        """(Under the lock.) Every awaited marker for which `seen` holds is sighted now."""
        for watch in [w for w in self._watches if seen(w.marker)]:
            watch.sighting = sighting
            watch.event.set()
            self._watches.remove(watch)


class Tap(Watched):
    """One drained terminal. `read` returns bytes, b'' if nothing is ready, None at the end."""

    def __init__(
        self, name: str, fd: int, read: Callable[[], bytes | None], tail: bytes = b""
    ) -> None:
        super().__init__(name)
        self.fd = fd
        self.read = read
        self.tail = tail
        hub().add(self)

    def _check(self, marker: bytes) -> None:
        if len(marker) > KEEP:
            raise ValueError("marker too long")

    def _seen_before(self, marker: bytes) -> Sighting | None:
        return Sighting(time.perf_counter(), self.total) if marker in self.tail else None

    def _detail(self) -> str:
        state = "closed" if self.eof else "open"
        return f"({self.total} bytes read, terminal {state}); last output: {self.tail[-300:]!r}"

    def feed(self, data: bytes, now: float) -> None:
        with self._lock:
            self.total += len(data)
            window = self.tail[-KEEP:] + data
            self.tail = (self.tail + data)[-TAIL:]
            self._fulfil(lambda marker: marker in window, Sighting(now, self.total))

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


class RemoteTap(Watched):
    """A terminal drained by a process of its own (drain_program.py), which reports only the
    end markers (`BENCH-END-<n>:`): the same `expect`/`wait` as a Tap, for those markers.
    `total` is the byte count at the last marker reported."""

    PROGRAM = os.path.join(os.path.dirname(__file__), "drain_program.py")

    def __init__(self, name: str, fd: int) -> None:
        super().__init__(name)
        self.tail = b"(drained by a separate process)"
        self._seen: dict[bytes, Sighting] = {}
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
                self._fulfil(marker.__eq__, sighting)
        self.eof = True

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _check(self, marker: bytes) -> None:
        if not re.fullmatch(rb"BENCH-END-\d+:", marker):
            raise ValueError("a remote tap only sees end markers")

    def _seen_before(self, marker: bytes) -> Sighting | None:
        return self._seen.get(marker)

    def _detail(self) -> str:
        state = "closed" if self.eof else "open"
        return f"({self.total} bytes read by the last marker, terminal {state})"

    def stop(self) -> None:
        stop_process(self._proc)
