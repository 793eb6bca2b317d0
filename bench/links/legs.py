"""One measurement ("leg") on a shaped link: keystroke echo, a cat to the far screen, the
host's own cat with joiners attached, a join. Each leg starts its own processes and stops them
however it ends; a leg whose wait runs out reports a timeout instead of a figure, so one stuck
program never hangs the run."""

from __future__ import annotations

import itertools
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..echo_program import QUIT, READY
from ..env import COLS, PROMPT, ROWS, SHELL
from ..errors import BenchError
from ..latency import KEYS, echo_argv
from ..ptys import PtyProcess
from ..taps import RemoteTap, Tap
from .net import Link
from .remote import LinkHost, LinkSshd, client
from .screen import ScreenTap, screen_tap

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
    keyboard: PtyProcess, screens: Sequence[Tap | RemoteTap], path: Path, timeout: float
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


class Session:
    """One program's shell reached from the far end of the link: `keyboard` and `screen` are the
    far end's (the joiner's, or the ssh or mosh client's); for beach, `host` is the host."""

    def __init__(self, legs: Legs, method: str) -> None:
        self.method = method
        self.host: LinkHost | None = None
        if method == "beach":
            self.host = legs.host(SHELL)
            # Its joiners do not guess: the echo rows time the transport (bench/predict.py
            # times what a person sees with guesses).
            self.host.join_argv += ["--predict", "never"]
            self.keyboard = self.host.join()
            self.screen: Tap | RemoteTap = self.keyboard.tap()
            self.screens: list[Tap | RemoteTap] = [self.screen, self.host.tap]
        else:
            assert legs.sshd is not None
            self.keyboard = client(legs.link, legs.sshd, method, shell_command())
            # mosh's client draws only what changed on the screen: watch the screen itself.
            mosh = method == "mosh"
            self.screen = screen_tap(self.keyboard, COLS, ROWS) if mosh else self.keyboard.tap()
            self.screens = [self.screen]
        try:
            self.screen.wait(self.screen.expect(PROMPT.encode(), seen_ok=True), START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def echo(self, count: int, warmup: int, timeout: float) -> list[float]:
        """Echo round trips of the echo program started in this shell, typed at the far end,
        one keystroke after the previous one's echo came back there (as bench/latency.py)."""
        ready = self.screen.expect(READY)
        self.keyboard.write(f"{shlex.join(echo_argv())}\r".encode())
        self.screen.wait(ready, START_TIMEOUT)
        # Typed and read from this thread now, for the lowest latency; what is read still
        # goes to a screen tap's screen, which must stay whole.
        self.keyboard.untap()
        keep = self.screen.absorb if isinstance(self.screen, ScreenTap) else lambda _: None
        samples: list[float] = []
        try:
            for i in range(warmup + count):
                key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
                start = time.perf_counter()
                self.keyboard.write(key)
                keep(self.keyboard.read_until(key, timeout))
                if i >= warmup:
                    samples.append(time.perf_counter() - start)
        finally:
            self.keyboard.write(bytes([QUIT]))
            keep(self.keyboard.read_until(PROMPT.encode(), START_TIMEOUT))
            if isinstance(self.screen, ScreenTap):
                self.screen.resume(self.keyboard)
            else:
                self.screen = self.keyboard.tap()
            self.screens[0] = self.screen
        return samples

    def host_of(self) -> LinkHost:
        assert self.host is not None
        return self.host

    def leave(self) -> LinkHost:
        """beach: the far-end joiner leaves (Ctrl-] d); the host stays, with nobody joined."""
        assert self.host is not None
        _end(self.keyboard, b"\x1dd")
        self.keyboard.close()
        self.host.joiners.remove(self.keyboard)
        return self.host

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
        else:
            self.keyboard.close()


class Legs:
    """The legs of one profile, for each compared program."""

    def __init__(self, link: Link, sshd: LinkSshd | None, workdir: Path, timeout: float) -> None:
        self.link, self.sshd, self.workdir, self.timeout = link, sshd, workdir, timeout

    def host(self, command: list[str]) -> LinkHost:
        return LinkHost(self.link, self.workdir, command, next(_hosts))

    def cat(self, session: Session, path: Path) -> Cat:
        """`cat path` typed at the far end, timed to the end marker on the far end's screen."""
        down0, up0 = self.link.wire_bytes()
        seen = timed_cat(session.keyboard, session.screens, path, self.timeout)
        down1, up1 = self.link.wire_bytes()
        if seen[0] is None:
            raise TimeoutError(f"no end marker on {session.keyboard.name} within {self.timeout} s")
        return Cat(seen[0], down1 - down0, up1 - up0)

    def joins(self, session: Session, count: int) -> list[float]:
        """Seconds from starting `beach join` to the current screen on its terminal, one join
        after another. The current screen ends in a marker printed just before: a late joiner
        is sent the screen's history first, whose old prompts must not count as arrival."""
        host = session.host_of()
        times = []
        for _ in range(count):
            n = next(_ids)
            marker = f"JOIN-MARK-{n}:".encode()
            watch = session.screen.expect(marker)
            session.keyboard.write(f"printf '%s%s:\\n' JOIN-MARK- {n}\r".encode())
            session.screen.wait(watch, START_TIMEOUT)
            joiner = host.join()
            try:
                joiner.read_until(marker, self.timeout)
                times.append(time.perf_counter() - joiner.started)
                _end(joiner, b"\x1dd")  # Ctrl-] d: leave before the next one joins
            finally:
                joiner.close()
                host.joiners.remove(joiner)
        return times

    def host_cost(
        self, host: LinkHost, counts: tuple[int, ...], path: Path, reps: int
    ) -> dict[int, list[float]]:
        """Seconds of the host's own cat (to its own screen) with each count of joiners."""
        found: dict[int, list[float]] = {}
        screens: list[Tap | RemoteTap] = [host.tap]
        for count in counts:
            new = [host.join() for _ in range(count - len(screens) + 1)]
            for joiner in new:  # joining together; each drained once its first screen is in
                joiner.read_until(PROMPT.encode(), START_TIMEOUT)
                # Each joiner's screen is drained by a process of its own, as if on its own
                # machine.
                screens.append(joiner.remote_tap())
            for _ in range(reps):
                seen = timed_cat(host.pty, screens, path, self.timeout)
                if seen[0] is None:
                    raise TimeoutError(f"the host's own cat took over {self.timeout} s")
                if None in seen:  # the next run must not start behind this one's backlog
                    raise TimeoutError(f"a joiner did not show the end within {self.timeout} s")
                found.setdefault(count, []).append(seen[0])
        return found
