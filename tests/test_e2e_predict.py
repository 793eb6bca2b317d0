"""Predictive echo end to end: a real host and joiner on either side of a shaped link (100 and
200 ms round trip, bench/links' delay bridge between network namespaces), a real bash.

What is asserted is what physics leaves no doubt about: without prediction a glyph cannot show
sooner than one round trip; with it, the median keystroke shows in under half of one (the
figures themselves are bench's: `python -m bench predict`). And what a person must be able to
trust: a secret typed at a password prompt never reaches the joiner's terminal, a wrong guess
is corrected within a round trip, and every session ends on the host's screen, cell for cell.

The joiner's terminal here is pexpect, read through pyte (oracle.Window); like any terminal it
answers the joiner's cursor query (DSR), which `--predict auto` asks before it trusts a model
made from the recent output.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import BEACH, Procs, need, shell_ready, start_host
from netns import require_root_tools
from oracle import Window, check

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.links.net import HOST_ADDR, Link, shaped  # noqa: E402
from bench.links.profiles import Profile  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

UPPER = Path(__file__).with_name("upper_program.py")
ASK = "\x1b[6n"
ASK_RE = re.escape(ASK)


@pytest.fixture(params=[100.0, 200.0], ids=lambda rtt: f"{rtt:g}ms")
def link(request: pytest.FixtureRequest) -> Iterator[Link]:
    require_root_tools("tc", "ethtool")
    with shaped(Profile(f"{request.param:g} ms", request.param, 20.0)) as made:
        yield made


def _in(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


class Terminal:
    """The joiner as a person at a terminal sees it, and types into it."""

    def __init__(self, proc, cols: int = 80, rows: int = 24) -> None:
        self.proc = proc
        proc.child.delaybeforesend = None  # pexpect waits 50 ms before each send by default
        self.window = Window(proc, cols, rows)
        self._answered = 0

    def answer(self) -> None:
        """Answer the cursor query the joiner just wrote, as a terminal does at once."""
        self._answered += 1
        screen = self.window.screen()
        self.proc.send(f"\x1b[{screen.cursor.y + 1};{screen.cursor.x + 1}R")

    def _read(self, pattern: str, timeout: float) -> bool:
        """Read until `pattern` (True) or the timeout (False), answering queries meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            i = self.proc.child.expect([pexpect.TIMEOUT, ASK_RE, pattern], timeout=left)
            if i == 0:
                return False
            if i == 1:
                self.answer()
                continue
            return True

    def key(self, ch: str, shows: str | None = None) -> float:
        """Type one key; the time until `shows` (else the key) appears in the output."""
        start = time.monotonic()
        self.proc.send(ch)
        assert self._read(re.escape(shows or ch), 10), f"{shows or ch!r} never showed"
        return time.monotonic() - start

    def pause(self, seconds: float) -> None:
        self._read("(?!x)x", seconds)  # (a pattern that never matches)

    def type(self, text: str, gap: float) -> list[float]:
        """At a person's pace: each key's time to its glyph (a guess or the host's echo)."""
        times = []
        for ch in text:
            times.append(self.key(ch))
            self.pause(gap)
        return times

    def row(self, n: int) -> str:
        return self.window.screen().display[n].rstrip()


def share(procs: Procs, tmp_path: Path, link: Link, predict: str):
    srv = procs.start([*_in(link.host), BEACH, "serve", "--host", HOST_ADDR, "--port", "0"])
    srv.expect(r"listening on (ws://\S+)")
    cast = tmp_path / "s.cast"
    host, info = start_host(
        procs,
        tmp_path,
        srv.child.match.group(1),
        "--record",
        str(cast),
        wrap=_in(link.host),
        cols=80,
        rows=24,
    )
    shell_ready(host)
    log = tmp_path / "join.log"
    cmd = info["join_command"]
    proc = procs.start(
        [
            *_in(link.joiner),
            BEACH,
            "--log-file",
            str(log),
            "--log-level",
            "info",
            *cmd[1:],
            "--predict",
            predict,
            "--quiet",  # no line saying how it connected: a key's pattern could match it
        ],
        cols=80,
        rows=24,
    )
    shell_ready(proc)
    # The session starts on the early relay; typing starts once its path has settled, whose
    # title (text in the output) a key's pattern could otherwise match.
    proc.expect(r"beach: connected, [^\x07]*\x07")
    return host, Terminal(proc), cast, log


def finish(host, term: Terminal, log: Path) -> str:
    host.send("exit\r")
    assert host.exit_code() == 0
    assert term.proc.exit_code() == 0
    return log.read_text()


def test_typing_shows_at_once_with_prediction(procs: Procs, tmp_path: Path, link: Link) -> None:
    rtt = link.profile.rtt_ms / 1000
    host, term, cast, log = share(procs, tmp_path, link, "always")
    # Each glyph is a capital not on the screen yet, so the first one seen is this key's.
    times = term.type("echo QWERTYUIOPZX", gap=rtt)
    term.key("\r", shows="QWERTYUIOPZX\r\n")
    shell_ready(term.proc)
    # The first key of an epoch waits for the host (it could be a password); the rest show
    # before the host could have echoed them.
    assert times[0] >= rtt * 0.9, times
    assert statistics.median(times[1:]) < rtt / 2, times
    check(cast, term.window)
    summary = finish(host, term, log)
    assert "predictive echo:" in summary and " 0 shown wrong" in summary, summary


def test_without_prediction_every_glyph_takes_a_round_trip(
    procs: Procs, tmp_path: Path, link: Link
) -> None:
    rtt = link.profile.rtt_ms / 1000
    host, term, cast, log = share(procs, tmp_path, link, "never")
    times = term.type("echo QWERTY", gap=rtt / 2)
    assert min(times) >= rtt * 0.9, times
    assert ASK not in term.proc.transcript.getvalue()
    term.key("\r", shows="QWERTY\r\n")
    shell_ready(term.proc)
    check(cast, term.window)
    assert "predictive echo:" not in finish(host, term, log)


def test_auto_predicts_once_it_has_measured_the_round_trip(
    procs: Procs, tmp_path: Path, link: Link
) -> None:
    rtt = link.profile.rtt_ms / 1000
    host, term, cast, log = share(procs, tmp_path, link, "auto")
    letters = "QWERTYUIOPZXCVBNMLKJGFDSAQWERTYUIOP"
    term.key("#")  # a comment: nothing runs whatever is typed
    shown = None
    for i, ch in enumerate(letters):  # the round trip is measured within seconds
        if term.key(ch) < rtt / 2:
            shown = i
            break
        term.pause(0.2)
    assert shown is not None, "no keystroke was shown before its echo"
    term.key("\r")
    shell_ready(term.proc)
    check(cast, term.window)
    finish(host, term, log)


def test_a_password_never_reaches_the_joiners_terminal(
    procs: Procs, tmp_path: Path, link: Link
) -> None:
    rtt = link.profile.rtt_ms / 1000
    host, term, cast, log = share(procs, tmp_path, link, "always")
    term.type("echo ab", gap=rtt)  # an epoch confirmed: guesses show
    term.key("\r", shows="ab\r\n")
    shell_ready(term.proc)
    prompts = [
        ("read -s x; echo got-${#x}", "got-4"),
        ("python3 -c 'import getpass; print(\"len\", len(getpass.getpass()))'", "len 4"),
    ]
    for command, answer in prompts:
        term.proc.send(command)
        term.pause(rtt * 2)
        start = len(term.proc.transcript.getvalue())
        term.proc.send("\r")
        term.pause(rtt * 2)  # the prompt is up (read -s shows none)
        for ch in "QZXJ":  # typed quickly and slowly: never shown either way
            term.proc.send(ch)
            term.pause(0.02 if ch in "QZ" else rtt)
        term.key("\r", shows=answer)
        shell_ready(term.proc)
        after = term.proc.transcript.getvalue()[start:]
        assert not set(after) & set("QZXJ"), repr(after)
    check(cast, term.window)
    finish(host, term, log)


def test_a_wrong_guess_is_corrected_within_a_round_trip(
    procs: Procs, tmp_path: Path, link: Link
) -> None:
    rtt = link.profile.rtt_ms / 1000
    host, term, cast, log = share(procs, tmp_path, link, "always")
    term.proc.send(f"{sys.executable} {UPPER}\r")
    term.proc.expect("upper> ")
    term.type("12", gap=rtt * 2)  # digits come back as typed: the epoch is confirmed
    row = next(i for i in range(24) if term.row(i).startswith("upper> "))
    start = time.monotonic()
    guessed = term.key("a")  # guessed at once, as typed...
    assert guessed < rtt / 2 and term.row(row) == "upper> 12a"
    while term.row(row) != "upper> 12A":  # ...and put right when the host's answer comes
        assert time.monotonic() - start < 10, term.row(row)
        term.pause(0.005)
    corrected = time.monotonic() - start
    assert corrected < rtt + 0.05 + 0.1, corrected  # the bound, and CI's slack
    term.key("\r", shows="upper done")
    shell_ready(term.proc)
    check(cast, term.window)
    summary = finish(host, term, log)
    assert " 1 shown wrong" in summary, summary


def test_vim_in_insert_and_normal_mode_ends_on_the_hosts_screen(
    procs: Procs, tmp_path: Path, link: Link
) -> None:
    need("vim")
    rtt = link.profile.rtt_ms / 1000
    host, term, cast, log = share(procs, tmp_path, link, "always")
    term.type("echo ok", gap=rtt)
    term.key("\r", shows="ok\r\n")
    shell_ready(term.proc)
    term.proc.send("vim -u NONE -N -n\r")
    term.pause(1.0)
    for keys in ("ihello world", "\x1b", "0dw", "A!", "\x1b", "otwo\x7f\x7fxx", "\x1bgg"):
        for ch in keys:
            term.proc.send(ch)
            term.pause(0.03)
        term.pause(rtt * 2)
    term.pause(rtt * 3)
    assert term.row(0) == "world!" and term.row(1) == "txx", term.window.screen().display[:3]
    check(cast, term.window)  # vim's screen, cell for cell
    term.proc.send(":q!\r")
    shell_ready(term.proc)
    check(cast, term.window)
    # Back at the prompt the model is made again from the recent output and checked against
    # the terminal's cursor: typing goes on where the shell is, not where vim left pyte.
    times = term.type("echo QWERTY", gap=rtt)
    term.key("\r", shows="QWERTY\r\n")
    shell_ready(term.proc)
    check(cast, term.window)
    assert min(times) < rtt / 2, times
    finish(host, term, log)


def test_on_a_fast_link_auto_adds_not_one_byte(procs: Procs, tmp_path: Path, server: str) -> None:
    """Loopback (well under 10 ms): a typing joiner with `--predict auto` writes exactly what a
    joiner with `--predict never` writes, byte for byte, once both are in."""
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    # --quiet: no line saying how each connected, drawn whenever its model is made.
    auto = procs.start([BEACH, *info["join_command"][1:], "--quiet"])
    auto.child.delaybeforesend = None
    shell_ready(auto)
    never = procs.start([BEACH, *info["join_command"][1:], "--predict", "never", "--quiet"])
    shell_ready(never)
    auto.send("echo START-$((6*7))\r")
    for p in (auto, never):
        p.expect("START-42\r\n")
    marks = [len(p.transcript.getvalue()) for p in (auto, never)]
    for line in ("echo hello world", "printf '%s\\n' a b c", "ls /", "echo x\x7fy"):
        for ch in line:
            auto.send(ch)
            auto.read_for(0.03)  # a quick typist's pace
        auto.send("\r")
        auto.read_for(0.2)
    auto.send("echo END-$((7*7))\r")
    for p in (auto, never):
        p.expect("END-49\r\n")
        shell_ready(p)

    def after(p, mark: int) -> str:  # titles (who joined) may differ; the screen may not
        return re.sub(r"\x1b\][^\x07]*\x07", "", p.transcript.getvalue()[mark:])

    assert after(auto, marks[0]) == after(never, marks[1])
    assert ASK not in auto.transcript.getvalue()
    host.send("exit\r")
    assert host.exit_code() == 0
