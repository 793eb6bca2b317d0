"""One measurement ("leg") on a shaped link: keystroke echo, a cat to the far screen, the
host's own cat with joiners attached, a join. Each leg starts its own processes and stops them
however it ends; a leg whose wait runs out reports a timeout instead of a figure, so one stuck
program never hangs the run."""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..env import COLS, PROMPT, ROWS, SHELL
from ..errors import BenchError
from ..latency import echo_argv, type_and_time
from ..echo_program import QUIT, READY
from ..ptys import PtyProcess
from ..taps import RemoteTap, Tap
from .net import Link
from .remote import LinkHost, LinkSshd, client
from .screen import screen_tap

START_TIMEOUT = 30.0
SETTLE = 0.3  # after a run: let the last prompt go by before the next command
_ids = itertools.count(1_000_000)  # end markers unique across the run
_hosts = itertools.count(1)
T = TypeVar("T")


@dataclass
class Failure:
    """A leg that gave no figure: "timeout" when a wait ran out, else "failed"."""

    cell: str
    why: str


def attempt(what: str, leg: Callable[[], T], failures: list[str]) -> T | Failure:
    """Run one leg; its failure becomes a cell. Progress goes to stderr: legs can be long."""
    start = time.monotonic()
    try:
        result: T | Failure = leg()
    except (BenchError, TimeoutError, OSError) as exc:
        timed_out = "within" in str(exc) or isinstance(exc, TimeoutError)
        failures.append(f"{what}: {exc}"[:400])
        result = Failure("timeout" if timed_out else "failed", str(exc))
    status = result.cell if isinstance(result, Failure) else "done"
    print(f"bench: links: {what} {status} ({time.monotonic() - start:.1f} s)", file=sys.stderr)
    return result


@dataclass
class Cat:
    """A cat seen on one screen: seconds from the keystroke to the end marker, and the bytes
    that crossed the link meanwhile (host to joiner, joiner to host)."""

    seconds: float
    down: int
    up: int


def shell_command() -> list[str]:
    return ["env", f"PS1={PROMPT}", *SHELL]


def timed_cat(
    keyboard: PtyProcess, screens: list[Tap | RemoteTap], path: Path, timeout: float
) -> list[float | None]:
    """`cat path` and an end marker typed at `keyboard`; seconds until each screen showed the
    marker (None for a screen that did not within `timeout` of the start)."""
    n = next(_ids)
    marker = f"BENCH-END-{n}:".encode()
    watches = [screen.expect(marker) for screen in screens]
    start = time.perf_counter()
    # printf joins the marker's halves, so the echoed command line never contains it.
    # The marker on a line of its own: a file that does not end in a newline cannot prefix it.
    keyboard.write(f"cat {path}; printf '\\n%s%s:\\n' BENCH-END- {n}\r".encode())
    seen: list[float | None] = []
    for screen, watch in zip(screens, watches, strict=True):
        left = max(start + timeout - time.perf_counter(), 0.01)
        try:
            seen.append(screen.wait(watch, left).at - start)
        except BenchError:
            seen.append(None)
    time.sleep(SETTLE)
    return seen


def _end(pty: PtyProcess, text: bytes) -> None:
    if pty.alive():
        pty.write(text)
        pty.wait(5.0)


@contextlib.contextmanager
def _closing(*ptys: PtyProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for pty in ptys:
            pty.close()


class Legs:
    """The legs of one profile, for each compared program."""

    def __init__(self, link: Link, sshd: LinkSshd | None, workdir: Path, timeout: float) -> None:
        self.link, self.sshd, self.workdir, self.timeout = link, sshd, workdir, timeout

    def _host(self, command: list[str]) -> LinkHost:
        return LinkHost(self.link, self.workdir, command, next(_hosts))

    # -- (a) keystroke echo ----------------------------------------------------------------------

    def echo(self, method: str, count: int, warmup: int) -> list[float]:
        """Echo round trips typed at the far end (the joiner's, or the ssh/mosh client's)."""
        if method == "beach":
            host = self._host(echo_argv())
            try:
                host.tap.wait(host.tap.expect(READY, seen_ok=True), START_TIMEOUT)
                joiner = host.join()
                joiner.read_until(READY, START_TIMEOUT)  # the first screen, from the snapshot
                samples = type_and_time(joiner, count, warmup, self.timeout)
                _end(joiner, bytes([QUIT]))
                return samples
            finally:
                host.close()
        assert self.sshd is not None
        pty = client(self.link, self.sshd, method, echo_argv())
        with _closing(pty):
            pty.read_until(READY, START_TIMEOUT)
            samples = type_and_time(pty, count, warmup, self.timeout)
            _end(pty, bytes([QUIT]))
            return samples

    # -- (b) a cat to the far screen -------------------------------------------------------------

    def cat(self, method: str, path: Path) -> Cat:
        """`cat path` typed at the far end, timed to the end marker on the far end's screen."""
        if method == "beach":
            host = self._host(SHELL)
            try:
                host.tap.wait(host.tap.expect(PROMPT.encode(), seen_ok=True), START_TIMEOUT)
                joiner = host.join()
                joiner.read_until(PROMPT.encode(), START_TIMEOUT)
                return self._timed(joiner, [joiner.tap(), host.tap], path)
            finally:
                host.close()
        assert self.sshd is not None
        pty = client(self.link, self.sshd, method, shell_command())
        with _closing(pty):
            screen = screen_tap(pty, COLS, ROWS) if method == "mosh" else pty.tap()
            screen.wait(screen.expect(PROMPT.encode(), seen_ok=True), START_TIMEOUT)
            return self._timed(pty, [screen], path)

    def _timed(self, keyboard: PtyProcess, screens: list[Tap | RemoteTap], path: Path) -> Cat:
        down0, up0 = self.link.wire_bytes()
        seen = timed_cat(keyboard, screens, path, self.timeout)
        down1, up1 = self.link.wire_bytes()
        if seen[0] is None:
            raise TimeoutError(f"no end marker on {keyboard.name}'s screen within {self.timeout} s")
        return Cat(seen[0], down1 - down0, up1 - up0)

    # -- (c) the host's own cat with joiners on the link -----------------------------------------

    def host_cost(self, counts: tuple[int, ...], path: Path, reps: int) -> dict[int, list[float]]:
        """Seconds of the host's own cat (to its own screen) with each count of joiners."""
        host = self._host(SHELL)
        found: dict[int, list[float]] = {}
        try:
            host.tap.wait(host.tap.expect(PROMPT.encode(), seen_ok=True), START_TIMEOUT)
            screens: list[Tap | RemoteTap] = [host.tap]
            for count in counts:
                while len(host.joiners) < count:
                    joiner = host.join()
                    joiner.read_until(PROMPT.encode(), START_TIMEOUT)
                    # Each joiner's screen is drained by a process of its own, as if on its
                    # own machine.
                    screens.append(joiner.remote_tap())
                for _ in range(reps):
                    seen = timed_cat(host.pty, screens, path, self.timeout)
                    if seen[0] is None:
                        raise TimeoutError(f"the host's own cat took over {self.timeout} s")
                    found.setdefault(count, []).append(seen[0])
            return found
        finally:
            host.close()

    # -- (d) joining -----------------------------------------------------------------------------

    def joins(self, count: int) -> list[float]:
        """Seconds from starting `beach join` to the shell prompt on its screen, one join after
        another into an idle shared shell."""
        host = self._host(SHELL)
        times = []
        try:
            host.tap.wait(host.tap.expect(PROMPT.encode(), seen_ok=True), START_TIMEOUT)
            for _ in range(count):
                joiner = host.join()
                joiner.read_until(PROMPT.encode(), self.timeout)
                times.append(time.perf_counter() - joiner.started)
                _end(joiner, b"\x1dd")  # Ctrl-] d: leave before the next one joins
                joiner.close()
            return times
        finally:
            host.close()
