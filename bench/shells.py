"""An interactive shell to type commands into, reached three ways: a plain PTY, `ssh -tt`, or a
beach session (typed at the host's keyboard, watched on the host's and the joiners' screens).
Every screen is drained by a tap, as a terminal emulator would drain it."""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from .beach import BeachHost, BeachJoiner, BeachServer, cpu_seconds, cpu_wait_seconds
from .env import COLS, PROMPT, ROWS, SHELL, proc_env
from .ptys import PtyProcess
from .ssh import SshServer
from .taps import RemoteTap, Tap

START_TIMEOUT = 30.0
SETTLE = 0.3  # pause between runs: let the last prompt and any notices go by
_ids = itertools.count(1)


@dataclass
class Seen:
    """One screen's view of one run: seconds from the keystroke to the end marker, the bytes
    that screen read in that time, and the CPU seconds of the process drawing on it."""

    seconds: float
    bytes: int
    cpu: float | None
    cpu_wait: float | None  # main thread runnable but not running (other processes had the CPUs)


def _cpu(pid: int | None) -> tuple[float, float] | None:
    return None if pid is None else (cpu_seconds(pid), cpu_wait_seconds(pid))


class Shell:
    """A shell on `keyboard` whose output shows on `screens` (the first is the keyboard's).
    `drawers[i]` is the pid of the process writing to `screens[i]`, if it is worth timing."""

    keyboard: PtyProcess
    screens: list[Tap]
    drawers: list[int | None]

    def timed_cat(self, path: Path, timeout: float) -> list[Seen]:
        """`cat path` followed by a unique end marker; how long each screen took to show it."""
        n = next(_ids)
        marker = f"BENCH-END-{n}:".encode()
        watches = [tap.expect(marker) for tap in self.screens]
        before = [tap.total for tap in self.screens]
        cpu_before = [_cpu(pid) for pid in self.drawers]
        # printf joins the marker's halves, so the echoed command line never contains it.
        command = f"cat {path}; printf '%s%s:\\n' BENCH-END- {n}\r"
        start = time.perf_counter()
        self.keyboard.write(command.encode())
        sightings = [
            tap.wait(watch, timeout) for tap, watch in zip(self.screens, watches, strict=True)
        ]
        cpu_after = [_cpu(pid) for pid in self.drawers]
        seen = []
        for sighting, total, cpu0, cpu1 in zip(
            sightings, before, cpu_before, cpu_after, strict=True
        ):
            cpu = wait = None
            if cpu0 is not None and cpu1 is not None:
                cpu, wait = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            seen.append(Seen(sighting.at - start, sighting.total - total, cpu, wait))
        time.sleep(SETTLE)
        return seen

    def close(self) -> None:
        raise NotImplementedError


class PlainShell(Shell):
    """The shell on a PTY of its own: the floor."""

    def __init__(self, argv: list[str] | None = None, name: str = "pty") -> None:
        self.keyboard = PtyProcess(argv or SHELL, proc_env(), COLS, ROWS, name=name)
        self.screens = [self.keyboard.tap()]
        self.drawers = [None]
        try:
            self.screens[0].wait(self.screens[0].expect(PROMPT.encode(), True), START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.keyboard.close()


class SshShell(PlainShell):
    """The shell behind `ssh -tt` to the private sshd."""

    def __init__(self, ssh: SshServer) -> None:
        super().__init__(ssh.argv(["env", f"PS1={PROMPT}", *SHELL]), name="ssh")
        self.drawers = [self.keyboard.pid]  # the ssh client


class BeachShell(Shell):
    """The shell shared by `beach host`, with `joiners` attached (all joined at once)."""

    def __init__(
        self,
        server: BeachServer,
        workdir: Path,
        joiners: int,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = BeachHost(server, workdir, SHELL, env)
        try:
            self.host.wait_prompt()
            self.keyboard = self.host.pty
            self.screens = [self.host.tap]
            self.drawers = [self.host.pid]
            self.joiners: list[BeachJoiner] = []
            self.add_joiners(joiners)
        except BaseException:
            self.close()
            raise

    def add_joiners(self, count: int) -> None:
        new = [self.host.join() for _ in range(count)]
        self.joiners += new
        for joiner in new:  # started together; each is drained once its first screen is in
            joiner.pty.read_until(PROMPT.encode(), START_TIMEOUT)
            # Each joiner's screen is drained by a process of its own, as if on its own
            # machine, so the joiners' copies of the stream never share the one tap thread
            # that reads the host's screen.
            self.screens.append(joiner.pty.remote_tap())
            self.drawers.append(joiner.pty.pid)

    @property
    def pid(self) -> int:
        return self.host.pid

    def joiner_side_pids(self) -> list[int]:
        """The joiners and the processes draining their screens."""
        drains = [tap.pid for tap in self.screens[1:] if isinstance(tap, RemoteTap)]
        return [joiner.pty.pid for joiner in self.joiners] + drains

    def close(self) -> None:
        with contextlib.suppress(Exception):
            for joiner in getattr(self, "joiners", []):
                joiner.detach(timeout=3.0)
        self.host.close()
