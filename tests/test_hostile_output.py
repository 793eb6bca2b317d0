"""Hostile output and a hostile server against real `beach join` processes.

- Output any read-write joiner can print (a tab-forward with a huge count, a parameter
  thousands of digits long) must neither freeze nor crash a joiner whose window is wider and
  taller than the PTY: it keeps rendering, detaches at once, ends on SIGTERM, and its terminal
  is restored.
- A deflate bomb from the host is a bad frame (resync, then a clear exit), never memory.
- Text from the server (error messages, reject reasons) never reaches the terminal raw.
- A server that tampers with or reorders the handshake makes the joiner exit 10 (security),
  never 7 ("refused") nor a "wrong token" the host would count; a dropped offer says so.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import sys
import time
import tracemalloc
import zlib
from typing import Any

import pyte
import pytest
from conftest import BEACH, Procs, shell_ready, start_host, start_join, strip_ansi
from oracle import XtermScreen
from test_security import EvilServer, ServerThread, confirm_before_pake, evil, kind

from beach_cli.errors import ProtocolError
from beach_cli.join.session import FRAME_INFLATE_MAX, INFLATE_PIECE, JoinOptions, JoinSession
from beach_cli.link.pace import Pace
from beach_cli.server.app import Client
from beach_cli.wire import compression
from beach_cli.wire.frames import (
    ECHO_FEATURE,
    FRAME_VERSION,
    MAX_CHUNK_BYTES,
    Frame,
    Hello,
    encode_echo,
    encode_hello,
)
from beach_cli.wire.keyplane import payload
from beach_cli.wire.signaling import server_message

PTY = (80, 24)
WIDE = (120, 40)  # the joiner's window: wider and taller than the PTY
DIGITS = 5000  # int() refuses more than 4300

# The shared program: waits for "go", prints the hostile sequences, then echoes lines.
HOSTILE = (
    "import sys\n"
    "w = sys.stdout.buffer.write\n"
    "def hostile():\n"
    "    w(b'A\\x1b[999999999IX\\r\\n')\n"  # tab forward: X on the PTY's last column
    f"    w(b'\\x1b[' + b'7' * {DIGITS} + b'CY\\r\\n')\n"  # forward: Y on the last column
    f"    w(b'\\x1b[' + b'9' * {DIGITS} + b'r')\n"  # a scroll region, 5000-digit top
    "    w(b'\\x1b[r')\n"
    f"    w(b'\\x1b[' + b'3' * {DIGITS} + b';' + b'2' * {DIGITS} + b'H')\n"
    "    w(b'\\x1b[12;1HZ\\x1b[100b|\\r\\n')\n"  # repeat Z: fills the row, wraps
    "    w(b'\\x1b[14;10H\\x1b[999999999ZB\\r\\n')\n"  # tab back to column 1
    "    w(b'\\x1b[?7l\\x1b[20;1HR\\x1b[999999999b\\r\\n\\x1b[?7h')\n"  # no autowrap: one row
    "    w(b'MARK-' + b'END\\r\\n')\n"
    "    sys.stdout.flush()\n"
    "hostile()\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'go':\n"
    "        w(b'\\x1b[H\\x1b[2J')\n"
    "        hostile()\n"
    "    else:\n"
    "        w(b'echo:' + line.strip().encode() + b'\\r\\n')\n"
    "    sys.stdout.flush()\n"
)


class RepScreen(XtermScreen):
    """The oracle plus REP (`CSI n b`, repeat the last character), which pyte lacks."""

    last = ""

    def draw(self, data: str) -> None:
        super().draw(data)
        if data:
            self.last = data[-1]

    def repeat_last(self, count: int = 1, *args: Any, **kwargs: Any) -> None:
        if self.last:
            self.draw(self.last * max(count, 1))


class RepStream(pyte.Stream):
    csi = {**pyte.Stream.csi, "b": "repeat_last"}


def screen_lines(text: str, size: tuple[int, int]) -> list[str]:
    screen = RepScreen(*size)
    RepStream(screen).feed(text)
    return [
        "".join(screen.buffer[y][x].data for x in range(size[0])).rstrip() for y in range(size[1])
    ]


def assert_hostile_screen_right(lines: list[str]) -> None:
    """What an 80x24 terminal shows for HOSTILE, seen in the top-left 80x24 of a wider one."""
    cols = PTY[0]
    assert "A" + " " * (cols - 2) + "X" in lines, lines
    assert " " * (cols - 1) + "Y" in lines, lines
    assert lines[11] == "Z" * cols, lines  # the repeat stops at the PTY's edge...
    assert lines[12] == "Z" * 21 + "|", lines  # ...and wraps there
    assert lines[13] == "B", lines  # tab back from column 10 lands on column 1
    assert lines[19] == "R" * cols, lines  # without autowrap, a huge repeat fills one row
    assert all(len(line) <= cols for line in lines), lines  # nothing past the PTY's edge


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.e2e
def test_huge_counts_and_long_parameters_neither_freeze_nor_crash_a_wider_joiner(
    procs: Procs, server: str, tmp_path
) -> None:
    host, info = start_host(
        procs, tmp_path, server, command=["python3", "-c", HOSTILE], cols=PTY[0], rows=PTY[1]
    )
    host.expect("MARK-END")
    # A read-write joiner, wider and taller: the PTY stays 80x24, wrap and viewport are on.
    rw = start_join(procs, info, cols=WIDE[0], rows=WIDE[1], maxread=65536)
    rw.expect("MARK-END")  # the snapshot replays the hostile bytes
    rw.send("go\r")  # and now as live output
    rw.expect("MARK-END")
    rw.send("still-typing\r")
    rw.expect("echo:still-typing")  # it keeps rendering and its keystrokes still flow
    lines = screen_lines(rw.transcript.getvalue().rsplit("\x1b[H\x1b[2J", 1)[-1], WIDE)
    assert_hostile_screen_right(lines[: PTY[1]])

    # A joiner whose terminal we check afterwards: a shell prints its exit code and modes.
    wrapper = (
        '"$@"; echo "rc=$?"; stty -a | tr -s " ;\\n" "  " | sed "s/^/modes: /"; echo; sleep 30'
    )
    view = procs.start(
        ["sh", "-c", wrapper, "sh", BEACH, *info["view_join_command"][1:]],
        cols=WIDE[0],
        rows=WIDE[1],
        maxread=65536,
    )
    view.expect("MARK-END")  # the snapshot, with the hostile bytes in it
    (joiner_pid,) = children(view.child.pid)
    t0 = time.monotonic()
    os.kill(joiner_pid, signal.SIGTERM)
    view.expect(r"rc=(\d+)")
    assert view.child.match.group(1) == "143"
    view.expect(r"modes: (.*?)\r?\n")
    modes = view.child.match.group(1).split()
    assert "icanon" in modes and "echo" in modes, modes  # raw mode undone
    sigterm_s = time.monotonic() - t0
    assert "Traceback" not in view.transcript.getvalue()
    assert "\x1b[?1049l" in view.transcript.getvalue()  # the modes it may have left on, undone

    t0 = time.monotonic()
    rw.send("\x1dd")
    assert rw.exit_code() == 0
    detach_s = time.monotonic() - t0
    assert "Traceback" not in rw.transcript.getvalue()
    print(f"\nSIGTERM to exit: {sigterm_s:.2f} s; Ctrl-] d to exit: {detach_s:.2f} s")
    host.send("exit\x04")
    host.kill()


# -- deflate bombs and output that cannot be shown -------------------------------------------------


class FakeTerm:
    """Enough of LocalTerminal for JoinSession's frame handling; counts what it is given."""

    is_tty = out_is_tty = False

    def __init__(self) -> None:
        self.written = 0
        self.peak = 0
        self.pending = 0

    def size(self) -> tuple[int, int]:
        return WIDE

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.peak = max(self.peak, len(data))

    def discard_pending(self) -> None:
        pass


class FakeLink:
    path = "test"
    settled = True
    through_server = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> bool:
        self.sent.append(frame)
        return True

    send_control = send


def greeted_session() -> tuple[JoinSession, FakeTerm, FakeLink]:
    term = FakeTerm()
    session = JoinSession(JoinOptions("abcdef-ghijkl", "ws://127.0.0.1:1/ws"), term)  # type: ignore[arg-type]
    session.link = link = FakeLink()
    session._done = asyncio.get_running_loop().create_future()
    hello = Hello(FRAME_VERSION, "rw", *PTY, (compression.FEATURE,))
    session._on_frame(Frame.HELLO, encode_hello(hello)[1:])
    return session, term, link


async def settle(session: JoinSession) -> None:
    """Until every frame handed to the session is drawn (large ones are drawn in pieces)."""
    for _ in range(10_000):
        if session._drawing is None:
            return
        await session._drawing
    raise AssertionError("still drawing")


@functools.cache
def bomb() -> list[bytes]:
    """One SNAPSHOT-sized burst of frames, each under MAX_CHUNK_BYTES, inflating ~1000-fold."""
    z = zlib.compressobj(9, zlib.DEFLATED, compression.WBITS)
    body = z.compress(bytes(64 * 1024 * 1024)) + z.flush(zlib.Z_FULL_FLUSH)
    assert len(body) <= MAX_CHUNK_BYTES
    return [body]


async def test_a_deflate_bomb_is_a_bad_frame_not_memory() -> None:
    session, term, link = greeted_session()
    (frame,) = bomb()
    tracemalloc.start()
    try:
        session._on_frame(Frame.SNAPSHOT, frame)  # 64 KiB that inflate to 64 MiB
        await settle(session)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert term.written <= FRAME_INFLATE_MAX + INFLATE_PIECE + 4096
    assert term.peak <= 2 * INFLATE_PIECE  # drawn in pieces
    assert peak < 4 * INFLATE_PIECE + (1 << 20), peak  # never the whole frame in memory
    assert link.sent and link.sent[-1][0] == Frame.SNAPSHOT  # a resync, not an error
    assert not session._done.done()
    # Output before the fresh screen is skipped (not even inflated), the fresh screen shows.
    before = term.written
    session._on_frame(Frame.OUTPUT, frame)
    await settle(session)
    assert term.written == before
    session._on_frame(Frame.SNAPSHOT, compression.standalone(b"fresh screen"))
    await settle(session)
    assert term.written > before and not session._done.done()


async def test_a_joiner_that_keeps_failing_stops_with_exit_3() -> None:
    session, _term, link = greeted_session()
    (frame,) = bomb()
    for _ in range(3):
        session._on_frame(Frame.SNAPSHOT, frame)  # every fresh screen is a bomb again
        await settle(session)
    assert session._done.done()
    exc = session._done.exception()
    assert isinstance(exc, ProtocolError) and exc.exit_code == 3
    assert "cannot show the host's output" in exc.message and "3 times" in exc.message
    assert sum(1 for f in link.sent if f[0] == Frame.SNAPSHOT) == 2  # two resyncs, then out


async def test_a_broken_deflate_stream_resyncs() -> None:
    session, term, link = greeted_session()
    session._on_frame(Frame.SNAPSHOT, compression.standalone(b"hello"))
    session._on_frame(Frame.OUTPUT, b"\xff\xff\xff\xff garbage")  # "invalid block type"
    assert link.sent[-1][0] == Frame.SNAPSHOT and not session._done.done()
    before = term.written
    session._on_frame(Frame.SNAPSHOT, compression.standalone(b"fresh"))
    assert term.written > before


# -- a hostile host's echo acknowledgements ------------------------------------------------------


class TtyTerm(FakeTerm):
    """A terminal the joiner predicts on; keeps what it is given."""

    is_tty = out_is_tty = True

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.data += data

    def set_title(self, text: str) -> None:
        pass


def predicting_session() -> tuple[JoinSession, TtyTerm, FakeLink]:
    term = TtyTerm()
    opts = JoinOptions("abcdef-ghijkl", "ws://127.0.0.1:1/ws", predict="always")
    session = JoinSession(opts, term)  # type: ignore[arg-type]
    session.link = link = FakeLink()
    link.pace = Pace()  # type: ignore[attr-defined]
    session._done = asyncio.get_running_loop().create_future()
    hello = Hello(FRAME_VERSION, "rw", *PTY, (ECHO_FEATURE,))
    session._on_frame(Frame.HELLO, encode_hello(hello)[1:])
    session._raw = True
    session._on_frame(Frame.SNAPSHOT, b"\x1b[H\x1b[2J$ ")
    return session, term, link


async def test_a_malformed_echo_is_a_bad_frame() -> None:
    session, _term, _link = predicting_session()
    session._on_frame(Frame.ECHO, b"\x00" * 8)  # no flags byte
    assert session._done.done()
    exc = session._done.exception()
    assert isinstance(exc, ProtocolError) and "malformed" in exc.message


async def test_a_storm_of_absurd_echoes_costs_nothing_and_shows_nothing() -> None:
    session, term, _link = predicting_session()
    session._on_input(b"a")
    session._on_frame(Frame.OUTPUT, b"a")
    start = len(term.data)
    t0 = time.process_time()
    for i in range(20_000):  # offsets from far behind to far ahead, every flag
        session._on_frame(Frame.ECHO, encode_echo((i * 7919) % 2**63, i % 256)[1:])
    assert time.process_time() - t0 < 5.0
    assert not session._done.done()
    assert len(term.data) - start < 1024  # nothing to take back, nothing drawn
    session._on_input(b"b")  # and typing goes on
    assert not session._done.done()


async def test_output_the_model_cannot_follow_drops_the_model_not_the_screen() -> None:
    session, _term, link = predicting_session()
    session._on_frame(Frame.OUTPUT, b"\x1b[" + b"9" * 50_000 + b"H\x1b[?1049h\x1b[?1049l")
    assert not session._done.done()
    assert not any(f[0] == Frame.SNAPSHOT for f in link.sent)  # no resync for the model's sake
    assert session.echo.model is None  # (pyte cannot take a 50,000-digit parameter)
    session._on_input(b"x")
    assert not session._done.done()


# -- text from the server ------------------------------------------------------------------------

NASTY = "\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\r\nPassword: "


def escapes_from(text: str) -> list[str]:
    """The OSC 52 / OSC 0 sequences NASTY carries, if any reached the terminal."""
    return re.findall(r"\x1b\]52;|\x1b\]0;owned|\r\nPassword: ", text)


@pytest.mark.e2e
def test_server_error_text_never_reaches_the_terminal_raw(procs: Procs, tmp_path) -> None:
    class LyingServer(EvilServer):
        async def _dispatch(self, client: Client, raw: str) -> None:
            if json.loads(raw).get("type") == "join":
                client.send(server_message("error", code="nope", message=NASTY))
                return
            await super()._dispatch(client, raw)

    st = ServerThread(LyingServer())
    try:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        code = joiner.exit_code()
        out = joiner.transcript.getvalue()
        assert code == 1, out
        assert "the server said:" in out
        assert escapes_from(out) == [], out
        assert "\x07" not in out
        host.send("exit\r")
        assert host.exit_code() == 0
    finally:
        st.stop()


@pytest.mark.e2e
def test_forged_reject_reason_is_shown_by_its_code_only(procs: Procs, tmp_path) -> None:
    def forge(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any] | None:
        if client.peer_id is not None and kind(msg) == "pake":
            client.send(
                server_message(
                    "signal", **{"from": "host"}, data=payload("reject", reason=NASTY[:200])
                )
            )
            return None
        return msg

    with evil(forge) as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        joiner.expect("for a reason this version does not know")
        assert joiner.exit_code() == 7
        out = joiner.transcript.getvalue()
        assert escapes_from(out) == [], out
        host.send("exit\r")
        assert host.exit_code() == 0


# -- exit codes when the server tampers ----------------------------------------------------------


@pytest.mark.e2e
def test_confirm_before_pake_exits_10_and_counts_no_guess(procs: Procs, tmp_path) -> None:
    log = tmp_path / "host.log"

    st = ServerThread(EvilServer(confirm_before_pake))
    try:
        host, info = start_host(
            procs,
            tmp_path,
            st.url,
            global_opts=("--log-file", str(log), "--log-level", "info"),
        )
        shell_ready(host)
        joiner = start_join(procs, info)
        joiner.expect("out of order")
        assert joiner.exit_code() == 10
        assert st.server.state.get("done")
        # An honest joiner afterwards (nothing reordered now) gets in; by then the host has
        # long finished with the first attempt.
        good = start_join(procs, info)
        shell_ready(good)
        good.send("\x1dd")
        assert good.exit_code() == 0
        host.send("exit\r")
        assert host.exit_code() == 0
        assert "wrong token" not in strip_ansi(host.transcript.getvalue())
        assert "wrong token" not in log.read_text()
    finally:
        st.stop()


@pytest.mark.e2e
def test_dropped_offer_says_what_timed_out(procs: Procs, tmp_path) -> None:
    def drop_offer(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any] | None:
        if client.peer_id is None and kind(msg) == "sealed":
            srv.state["dropped"] = True
            return None  # the host's offer (and anything sealed after it) never arrives
        return msg

    with evil(drop_offer) as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        cmd = list(info["join_command"])
        joiner = procs.start([BEACH, cmd[1], "--timeout", "3", *cmd[2:]])
        joiner.expect("the host's offer did not arrive within 3 s after the key was confirmed")
        assert joiner.exit_code() == 9
        assert "no usable network path" not in joiner.transcript.getvalue()
        assert st.server.state.get("dropped")
        host.send("exit\r")
        assert host.exit_code() == 0


# A real `beach host` made hostile with beach's own modules: every snapshot it sends is a
# deflate bomb (64 MiB of NULs in ~64 KiB), so every resync the joiner asks for is one too.
BOMBING_HOST = (
    "import sys, zlib\n"
    "from beach_cli.wire import compression\n"
    "z = zlib.compressobj(9, zlib.DEFLATED, compression.WBITS)\n"
    "BOMB = z.compress(bytes(64 << 20)) + z.flush(zlib.Z_FULL_FLUSH)\n"
    "compression.standalone = lambda data: BOMB\n"
    "sys.argv = sys.argv[1:]\n"
    "from beach_cli.cli import main\n"
    "main()\n"
)


@pytest.mark.e2e
def test_a_bombing_host_makes_the_joiner_stop_with_exit_3(
    procs: Procs, server: str, tmp_path
) -> None:
    host, info = start_host(procs, tmp_path, server, wrap=[sys.executable, "-c", BOMBING_HOST])
    joiner = start_join(procs, info, cols=WIDE[0], rows=WIDE[1])
    joiner.expect(r"cannot show the host's output \(BadOutput: a frame inflates past \d+ bytes\)")
    joiner.expect("3 times in a row; giving up")
    assert joiner.exit_code() == 3
    assert "Traceback" not in joiner.transcript.getvalue()
    host.send("exit\r")
    assert host.exit_code() == 0
