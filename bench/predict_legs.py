"""The predict section's legs on a shaped link: the scripted typing session through one
program (beach with a --predict mode, `ssh -tt`, mosh with its own prediction), and the
joiner's CPU and time to its final screen during a big cat, per --predict mode."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .env import COLS, PROMPT, ROWS, SHELL, proc_env
from .errors import BenchError
from .links.legs import shell_command, timed_cat
from .links.net import HOST_ADDR, Link
from .links.remote import LinkHost, LinkSshd, client
from .predict_typing import GlyphTap, Looks, Sample, prompt_below, type_session
from .ptys import PtyProcess
from .taps import Tap

START_TIMEOUT = 30.0
PACED = (50, 4800, 0.1)  # chunks, bytes each, s between: ~45 KB/s, under join/echo.py's budget
_marks = itertools.count(2_000_000)  # end markers unique across the run
LEAVE = b"\x1dd"  # Ctrl-] d: a beach joiner leaves the way a person does
MODES = {"beach never": "never", "beach auto": "auto", "beach always": "always"}
SUMMARY = re.compile(
    r"predictive echo: (\d+) keystrokes guessed at, (\d+) shown before the host's echo, "
    r"(\d+) cells confirmed, (\d+) shown wrong, (\d+) resets"
)


@dataclass
class Summary:
    """The joiner's own count, from the line it logs when it leaves."""

    keys: int
    shown: int
    confirmed: int
    wrong: int
    resets: int


@dataclass
class Typing:
    samples: list[Sample]
    looks: Looks  # the far end's screen updates: wrong ones, going back
    summary: Summary | None  # None: the joiner guessed at nothing (or is not beach)
    output: bytes  # what the far end's terminal showed from Ctrl-L to the last prompt


@dataclass
class Cat:
    seconds: float  # from the keystroke to the end marker on the joiner's screen
    cpu: float  # the joiner's user + system CPU meanwhile (and 0.3 s after), seconds
    drawn: int  # bytes its terminal was sent meanwhile
    kind: str = "cat"  # or "paced"


def parse_summary(log: str) -> Summary | None:
    found = SUMMARY.findall(log)
    return Summary(*(int(n) for n in found[-1])) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mosh_argv(sshd: LinkSshd, command: list[str]) -> list[str]:
    """mosh in its default adaptive mode: it shows its guesses when the link is slow."""
    ssh = shlex.join(["ssh", *sshd.ssh_options()])
    target = f"{sshd.ssh.user}@{HOST_ADDR}"
    return ["mosh", "--predict=adaptive", f"--ssh={ssh}", target, "--", *command]


def beach_join(host: LinkHost, link: Link, mode: str, log: Path) -> PtyProcess:
    """`beach join --predict MODE`, logging at INFO to `log` (where its summary goes)."""
    cut = len(link.exec("joiner")) + 1  # after the namespace prefix and the beach program
    argv = [
        *host.join_argv[:cut],
        "--log-file",
        str(log),
        "--log-level",
        "info",
        *host.join_argv[cut:],
        "--predict",
        mode,
    ]
    joiner = PtyProcess(argv, proc_env(), COLS, ROWS, name=f"{host.pty.name}-{mode}")
    host.joiners.append(joiner)
    return joiner


class Far:
    """One program's shell reached from the joiner's side of the link, its terminal watched
    by a GlyphTap (`glyphs`) or a plain Tap (for bulk output, which pyte could not follow)."""

    def __init__(
        self, link: Link, sshd: LinkSshd, workdir: Path, method: str, serial: int, glyphs: bool
    ) -> None:
        self.method = method
        self.host: LinkHost | None = None
        self.log: Path | None = None
        if method in MODES:
            self.host = LinkHost(link, workdir, SHELL, serial)
            self.log = workdir / f"predict-join-{serial}.log"
            self.pty = beach_join(self.host, link, MODES[method], self.log)
        elif method == "mosh":
            argv = [*link.exec("joiner"), *mosh_argv(sshd, shell_command())]
            self.pty = PtyProcess(argv, proc_env(), COLS, ROWS, name=f"mosh{serial}")
        else:
            self.pty = client(link, sshd, method, shell_command())
        self.tap: GlyphTap | Tap = GlyphTap(self.pty) if glyphs else self.pty.tap()
        try:
            if isinstance(self.tap, GlyphTap):
                self.tap.until(prompt_below(-1), START_TIMEOUT, "first prompt")
            else:
                self.tap.wait(self.tap.expect(PROMPT.encode(), seen_ok=True), START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def typing(self, lines: tuple[str, ...], timeout: float) -> Typing:
        tap = self.tap
        assert isinstance(tap, GlyphTap)
        tap.record()
        samples, looks = type_session(self.pty, tap, lines, timeout)
        output = tap.recording()
        return Typing(samples, looks, self.leave(), output)

    def cats(self, path: Path, reps: int, timeout: float) -> list[Cat]:
        """`cat path` typed at the joiner `reps` times, each timed to its end marker there."""
        found = []
        for _ in range(reps):
            before, total = cpu_seconds(self.pty.pid), self.tap.total
            seen = timed_cat(self.pty, [self.tap], path, timeout)[0]
            if seen is None:
                raise TimeoutError(f"{self.method}: no end marker within {timeout:.0f} s")
            found.append(Cat(seen, cpu_seconds(self.pty.pid) - before, self.tap.total - total))
        return found

    def paced(self, path: Path, reps: int, timeout: float) -> list[Cat]:
        """Output a person could still read along (PACED: slow enough that a joiner modelling
        the screen keeps feeding its model), timed like a cat."""
        assert isinstance(self.tap, Tap)
        chunks, size, pause = PACED
        found = []
        for _ in range(reps):
            n = next(_marks)
            marker = f"BENCH-END-{n}:".encode()
            watch = self.tap.expect(marker)
            before, total = cpu_seconds(self.pty.pid), self.tap.total
            start = time.perf_counter()
            self.pty.write(
                f"for i in $(seq {chunks}); do head -c {size} {path}; sleep {pause}; done; "
                f"printf '\\n%s%s:\\n' BENCH-END- {n}\r".encode()
            )
            seen = self.tap.wait(watch, timeout).at - start
            time.sleep(0.3)  # as timed_cat: the last prompt goes by
            cpu = cpu_seconds(self.pty.pid) - before
            found.append(Cat(seen, cpu, self.tap.total - total, "paced"))
        return found

    def leave(self) -> Summary | None:
        """beach: the joiner leaves; its summary line, if it logged one."""
        if self.host is None or self.log is None:
            return None
        if self.pty.alive():
            self.pty.write(LEAVE)
            if self.pty.wait(10.0) is None:
                raise BenchError(f"{self.pty.name}: did not leave within 10 s")
        return parse_summary(self.log.read_text() if self.log.exists() else "")

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
        else:
            self.pty.close()
