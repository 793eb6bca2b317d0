"""A host without a terminal (CI, systemd, `beach host < /dev/null > log`) and the session's
lifetime: real `beach serve`, a real `beach host` whose stdin is /dev/null and whose stdout is a
pipe, and real `beach join` processes in pseudo-terminals."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from conftest import BEACH, SHELL, TIMEOUT, Procs, beach_env, shell_ready
from pexpect import fdpexpect

pytestmark = pytest.mark.e2e

LINK = r"open to join \(read-write\): +(\S+)"
VIEW_LINK = r"open to watch \(view-only\): +(\S+)"


class Headless:
    """`beach host` with no terminal: stdin /dev/null, stdout a pipe read with pexpect (only
    stdout: the join information and notices), stderr a file (the exit line, logs)."""

    def __init__(self, tmp_path: Path, n: int, argv: list[str], **env: str) -> None:
        self.info_path = tmp_path / f"info-headless-{n}.json"
        self.err_path = tmp_path / f"stderr-headless-{n}.log"
        self.argv = [BEACH, "host", "--info-file", str(self.info_path), *argv]
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=beach_env(**env),
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        self.out = fdpexpect.fdspawn(
            self.proc.stdout, timeout=TIMEOUT, encoding="utf-8", codec_errors="replace"
        )
        self.transcript = io.StringIO()  # all of stdout
        self.out.logfile_read = self.transcript
        self.started = time.monotonic()

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        self.out.expect(pattern, timeout=timeout)
        return self.out.match

    def links(self) -> tuple[str, str]:
        """The two links of the banner (and the info file, which says the same)."""
        link = self.expect(LINK).group(1)
        view = self.expect(VIEW_LINK).group(1)
        self.info = json.loads(self.info_path.read_text())
        assert (link, view) == (self.info["join_link"], self.info["view_link"])
        return link, view

    def joined(self, n: int) -> None:
        """Wait for `n` more joiners to be in (in any order), as the host's notices say."""
        for _ in range(n):
            self.expect(r" joined \((?:read-write|view-only)")

    def exit_code(self, timeout: float = TIMEOUT) -> int:
        """Wait for the end (stdout read to its end too) and return the exit code."""
        self.out.expect(pexpect.EOF, timeout=timeout)
        return self.proc.wait(timeout=5)

    @property
    def stdout(self) -> str:
        return self.transcript.getvalue()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def headless(procs: Procs, server: str, tmp_path: Path) -> Iterator:
    started: list[Headless] = []

    def start(*extra: str, command: list[str] | None = None, **env: str) -> Headless:
        argv = ["--server", server, *extra, "--", *(command or SHELL)]
        host = Headless(tmp_path, len(started), argv, **env)
        started.append(host)
        return host

    yield start
    for host in started:
        host.kill()


def join(procs: Procs, link: str, **kw: object):
    return procs.start([BEACH, "join", link], **kw)


def detach(joiner) -> None:
    joiner.send("\x1dd")  # Ctrl-] d
    joiner.expect("detached")
    assert joiner.exit_code() == 0


def test_headless_host_prints_the_join_information_once_and_is_joinable(
    procs: Procs, headless
) -> None:
    host = headless()
    link, view = host.links()
    joiner = join(procs, link)
    shell_ready(joiner)
    viewer = join(procs, view)
    host.expect(r"joined \(view-only")
    joiner.send("echo shared-$((6*7))\r")
    joiner.expect("shared-42")
    viewer.expect("shared-42")
    joiner.send("exit 5\r")
    assert host.exit_code() == 5
    for j in (joiner, viewer):
        j.expect("the host's shell exited with status 5")
        assert j.exit_code() == 5

    out = host.stdout
    assert out.count("open to join (read-write)") == 1, out  # never re-printed
    assert out.count("open to watch (view-only)") == 1, out
    assert " ".join(host.info["join_command"]) in out
    assert "\x1b" not in out and "\r" not in out, repr(out)  # plain lines, no escapes
    assert "shared-42" not in out  # the shared program is drawn nowhere
    assert re.search(r"\d\d:\d\d:\d\d \S+ .*joined \(read-write", out), out
    err = host.stderr
    assert "beach: the shared shell exited with status 5" in err, err
    assert "\x1b" not in err and "\r" not in err, repr(err)
    assert not host.info_path.exists()  # removed at the end, as always


def test_headless_flag_on_a_terminal_reads_nothing_and_draws_nothing(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    """--headless with a terminal: not raw, stdin not read, the banner plain, no titles."""
    info = tmp_path / "info.json"
    host = procs.start(
        [BEACH, "host", "--headless", "--info-file", str(info), "--server", server, "--", *SHELL]
    )
    host.expect(LINK)
    link = host.child.match.group(1)
    joiner = join(procs, link)
    shell_ready(joiner)
    host.send("echo typed-at-the-host\r")  # the host's terminal echoes it (cooked); nobody reads
    host.expect("typed-at-the-host")
    joiner.send("echo from-joiner-$((2*3))\r")
    joiner.expect("from-joiner-6")
    joiner.send("exit\r")
    assert host.exit_code() == 0
    assert joiner.exit_code() == 0
    assert "typed-at-the-host" not in joiner.transcript.getvalue()
    assert "from-joiner-6" not in host.transcript.getvalue()
    assert "\x1b" not in host.transcript.getvalue(), repr(host.transcript.getvalue())


# Reports the PTY's size into a file: at start, and on every SIGWINCH.
REPORT_SIZE = """
import os, signal, sys
out = open(sys.argv[1], "a", buffering=1)
def report(*_):
    cols, rows = os.get_terminal_size(0)
    out.write(f"{cols}x{rows}\\n")
signal.signal(signal.SIGWINCH, report)
report()
while True:
    signal.pause()
"""


def wait_for_lines(path: Path, n: int, timeout: float = TIMEOUT) -> list[str]:
    """The file's first `n` lines, once it has them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines[:n]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} has {lines}, not {n} lines")
        time.sleep(0.05)


def test_headless_pty_size_comes_from_size_then_follows_read_write_joiners(
    procs: Procs, headless, tmp_path: Path
) -> None:
    sizes = tmp_path / "sizes"
    host = headless("--size", "100x33", command=[sys.executable, "-c", REPORT_SIZE, str(sizes)])
    link, view = host.links()
    assert "100x33" in host.stdout
    assert wait_for_lines(sizes, 1) == ["100x33"]

    small = join(procs, link, cols=90, rows=25)
    assert wait_for_lines(sizes, 2)[-1] == "90x25"
    viewer = join(procs, view, cols=60, rows=15)  # a viewer never sizes the PTY
    host.expect(r"joined \(view-only")
    large = join(procs, link, cols=150, rows=50)  # larger: the smallest still decides
    host.expect(r"joined \(read-write")  # (the view-only notice came after the small one's)
    detach(small)
    # Not capped at --size: with no window of its own, the host follows the joiners alone.
    assert wait_for_lines(sizes, 3)[-1] == "150x50"
    detach(large)
    assert wait_for_lines(sizes, 4)[-1] == "100x33"  # nobody sizes it: --size again
    detach(viewer)
    assert sizes.read_text().splitlines() == ["100x33", "90x25", "150x50", "100x33"]


def test_wait_for_joiner_ends_a_session_nobody_joined(headless) -> None:
    host = headless("--wait-for-joiner", "2s", "--exit-when-last-leaves")
    host.links()
    assert "ends if nobody joins within 2s" in host.stdout
    assert host.exit_code() == 11
    assert time.monotonic() - host.started >= 2.0
    lines = host.stderr.strip().splitlines()
    assert lines[-1] == "beach: nobody joined within 2s (--wait-for-joiner); session ended"
    assert not host.info_path.exists()


def test_a_join_in_time_cancels_the_wait_and_max_duration_ends_the_session(
    procs: Procs, headless
) -> None:
    """Joined within --wait-for-joiner: the session outlives it, and ends at --max-duration
    (exit 12, not 11), its joiners told why: a NOTICE (their title), then their exit line."""
    host = headless("--wait-for-joiner", "5s", "--max-duration", "8s")
    link, view = host.links()
    joiner = join(procs, link)
    viewer = join(procs, view)
    host.joined(2)
    assert time.monotonic() - host.started < 5, "joined too late for this test to mean anything"
    shell_ready(joiner)
    assert host.exit_code() == 12
    assert time.monotonic() - host.started >= 8.0
    why = "the time limit (8s, --max-duration) ran out"
    for j in (joiner, viewer):
        j.expect(f"beach: session ended by the host: {re.escape(why)}")
        assert j.exit_code() == 12
        seen = j.transcript.getvalue()
        title = seen.find(f"\x1b]2;beach: {why}")
        assert 0 <= title < seen.find("session ended by the host"), "no NOTICE before the EXIT"
    assert host.stderr.strip().splitlines()[-1] == f"beach: {why}; session ended"
    assert "nobody joined" not in host.stderr


def test_exit_when_last_leaves(procs: Procs, headless) -> None:
    host = headless("--exit-when-last-leaves")
    link, view = host.links()
    joiner = join(procs, link)
    viewer = join(procs, view)
    host.joined(2)
    detach(joiner)
    host.expect(r" left\n")
    assert host.alive()  # one joiner is still there
    detach(viewer)
    assert host.exit_code() == 0
    lines = host.stderr.strip().splitlines()
    assert lines[-1] == "beach: the last joiner left (--exit-when-last-leaves); session ended"


def join_and_find_the_continue_file(procs: Procs, host: Headless) -> tuple[Any, Path]:
    """A read-write joiner in, and the path of the session's continue file, as the shared
    shell sees it."""
    link, _ = host.links()
    joiner = join(procs, link)
    shell_ready(joiner)
    joiner.send('echo "file=$BEACH_CONTINUE_FILE."\r')
    joiner.expect(r"file=(/\S+/continue)\.")
    return joiner, Path(joiner.child.match.group(1))


@pytest.mark.parametrize("how", ["beach continue", 'touch "$BEACH_CONTINUE_FILE"'])
def test_the_person_inside_lets_the_job_continue(procs: Procs, headless, how: str) -> None:
    host = headless("--max-duration", "10m")
    joiner, path = join_and_find_the_continue_file(procs, host)
    joiner.send(f"{how}\r")
    assert host.exit_code() == 0
    joiner.expect(r"session ended by the host: continued from the shared shell \(beach continue\)")
    assert joiner.exit_code() == 0
    lines = host.stderr.strip().splitlines()
    assert lines[-1] == "beach: continued from the shared shell (beach continue); session ended"
    assert not path.parent.exists()  # its directory goes with the session


def test_a_second_sigterm_does_not_cut_the_shutdown_short(procs: Procs, headless) -> None:
    """SIGTERM twice in a row (a supervisor, a CI runner's cancel): the host still hangs up on
    its joiners and removes its info file and continue directory, and exits 143 once."""
    host = headless()
    joiner, path = join_and_find_the_continue_file(procs, host)
    host.proc.send_signal(signal.SIGTERM)
    joiner.expect("the host")  # hung up on: the host is in its shutdown now...
    if host.alive():
        host.proc.send_signal(signal.SIGTERM)  # ...which a second signal must not cut short
    assert host.exit_code() == 143
    assert not host.info_path.exists() and not path.parent.exists()
    assert host.stderr.strip().splitlines()[-1] == "beach: terminated"


def test_beach_continue_outside_a_session_is_one_line() -> None:
    done = subprocess.run(
        [BEACH, "continue"], capture_output=True, text=True, timeout=30, env=beach_env()
    )
    assert done.returncode == 2
    assert done.stderr == "beach: not inside a shared shell (BEACH_CONTINUE_FILE is not set)\n"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--wait-for-joiner", "10x"),
        ("--wait-for-joiner", ""),
        ("--wait-for-joiner", "-5s"),
        ("--max-duration", "0"),
        ("--max-duration", "30m1h"),
        ("--max-duration", "\u0661\u0660m"),  # Arabic-Indic digits
        ("--max-duration", "99999999999999h"),
        ("--size", "0x10"),
        ("--size", "120x"),
        ("--size", "biggest"),
    ],
)
def test_bad_values_are_one_clear_line_and_exit_2(option: str, value: str) -> None:
    argv = [BEACH, "host", option, value, "--", "true"]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env=beach_env(), stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"beach: Invalid value for '{option}'"), lines


def test_size_modes_keep_working_on_a_host_with_a_terminal(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    """`--size host` as before; a COLSxROWS given to a host with a terminal is said to be for
    headless hosts, and its window decides."""
    info = tmp_path / "info.json"
    argv = [BEACH, "host", "--size", "host", "--size", "50x10", "--info-file", str(info)]
    host = procs.start([*argv, "--server", server, "--", *SHELL], cols=100, rows=30)
    host.expect(r"--size 50x10 is for a host without a terminal \(--headless\)")
    host.expect("to join")
    joiner = join(procs, json.loads(info.read_text())["join_link"], cols=80, rows=24)
    shell_ready(joiner)
    joiner.send("stty size\r")
    joiner.expect(r"\r30 100\r\n")  # the host's window alone, not the smaller joiner's
    joiner.send("exit\r")
    assert host.exit_code() == 0 and joiner.exit_code() == 0
