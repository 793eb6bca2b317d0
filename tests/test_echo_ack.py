"""The host's ECHO (host/stream.py, host/pty.py): it comes ECHO_WAIT after a keystroke reached
the PTY, behind the output the program made of it, even output still queued for a slow path;
it says when the PTY reads a password (termios, on a real PTY) and when someone else typed.
The stream and the link are beach's own; only the shared session is a stand-in, as in
test_stream_pace.py."""

from __future__ import annotations

import asyncio
import sys
import termios

from test_link_pace import _Path
from test_stream_pace import until

from beach_cli.host import stream as stream_mod
from beach_cli.host.handshake import Admission
from beach_cli.host.pty import PtyProcess
from beach_cli.resume import ResumeRecord
from beach_cli.wire.frames import (
    ECHO_FEATURE,
    ECHO_OTHERS,
    ECHO_SECRET,
    FRAME_VERSION,
    Frame,
    Hello,
    decode_echo,
    decode_frame,
    encode_echo_wanted,
    encode_hello,
    encode_input,
)


class Session:
    """The shared session a stream sees: a program that echoes each keystroke when the
    stream lets the host read the PTY (settle_output), a password state, other writers."""

    def __init__(self) -> None:
        self.stream: stream_mod.Stream | None = None
        self.unread = bytearray()  # the program's echo, not read from the PTY yet
        self.secret = False
        self.others = 0

    def snapshot(self, clear_scrollback: bool = True, recent: int | None = None) -> bytes:
        return b"\x1b[H\x1b[2J$ "

    def keystrokes(self, data: bytes, writer: str) -> None:
        self.unread += data

    def settle_output(self) -> None:
        if self.unread and self.stream is not None:
            data, self.unread = bytes(self.unread), bytearray()
            self.stream.output(data, len(data))

    def secret_input(self) -> bool:
        return self.secret

    def writes_by_others(self, writer: str) -> int:
        return self.others

    def sizes_changed(self) -> None:
        pass


class Recording(_Path):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[Frame, bytes]] = []
        self.changed = asyncio.Event()

    def _transmit(self, frame: bytes) -> None:
        super()._transmit(frame)
        self.frames.append(decode_frame(frame))
        self.changed.set()

    def echoes(self) -> list[tuple[int, int]]:
        return [decode_echo(body) for kind, body in self.frames if kind == Frame.ECHO]


async def started(features: tuple[str, ...] = (ECHO_FEATURE,), role: str = "rw", asks: bool = True):
    session, path = Session(), Recording()
    path.pace.rate = 1e9
    admission = Admission(role=role, record=ResumeRecord(role))
    stream = stream_mod.Stream(session, "p1", admission)  # type: ignore[arg-type]
    session.stream = stream
    stream.on_frame(Frame.HELLO, encode_hello(Hello(FRAME_VERSION, role, 80, 24, features))[1:])
    stream.start(path, 80, 24)
    await until(lambda: any(k == Frame.SNAPSHOT for k, _ in path.frames), path.changed)
    if asks:  # the joiner shows guesses: it asks for ECHOs
        stream.on_frame(Frame.ECHO, encode_echo_wanted(True)[1:])
    return stream, path, session


def typed(stream: stream_mod.Stream, offset: int, data: bytes) -> None:
    stream.on_frame(Frame.INPUT, encode_input(offset, data)[1:])


async def test_the_echo_comes_behind_the_output_the_keystroke_made() -> None:
    stream, path, _session = await started()
    try:
        typed(stream, 0, b"ls")
        await until(lambda: path.echoes(), path.changed)
        kinds = [k for k, _ in path.frames]
        echo_at = kinds.index(Frame.ECHO)
        outputs = [body for k, body in path.frames[:echo_at] if k == Frame.OUTPUT]
        assert b"ls" in b"".join(outputs)  # the program's echo went out first
        assert path.echoes() == [(2, 0)]
    finally:
        stream.close()


async def test_a_program_slow_to_echo_is_waited_for_and_one_that_writes_nothing_not_long() -> None:
    """A busy host's shell can echo tens of milliseconds late: the ECHO waits for what it
    writes (a guess judged before it would be judged wrong). A program that writes nothing (a
    password prompt) gets its ECHO after ECHO_WAIT_MAX."""
    stream, path, session = await started()
    session.settle_output = lambda: None  # type: ignore[method-assign]  # echoes on its own time
    try:
        typed(stream, 0, b"a")
        await asyncio.sleep(stream_mod.ECHO_WAIT * 2.5)  # (the program's own time)
        assert not path.echoes()  # past ECHO_WAIT, but nothing written yet
        stream.output(b"a", 1)  # the late echo
        await until(lambda: path.echoes() == [(1, 0)], path.changed)
        kinds = [k for k, _ in path.frames]
        assert kinds.index(Frame.ECHO) > max(i for i, k in enumerate(kinds) if k == Frame.OUTPUT)
        loop = asyncio.get_running_loop()
        typed(stream, 1, b"s")  # nothing is ever written for this one
        started_at = loop.time()
        await until(lambda: path.echoes() == [(1, 0), (2, 0)], path.changed)
        assert loop.time() - started_at >= stream_mod.ECHO_WAIT_MAX * 0.9
    finally:
        stream.close()


async def test_the_echo_waits_behind_output_still_queued_for_a_slow_path() -> None:
    stream, path, _session = await started()
    try:
        path.held = 10**9  # the path takes nothing: output waits in the stream's queue
        stream.output(b"o" * 8192, 8192)
        typed(stream, 0, b"a")
        await asyncio.sleep(stream_mod.ECHO_WAIT * 3)  # (the timer's own time: nothing to await)
        assert not path.echoes()  # held: the output it covers has not gone yet
        path.held = 0
        path._drained()
        await until(lambda: path.echoes(), path.changed)
        kinds = [k for k, _ in path.frames]
        last_output = max(i for i, k in enumerate(kinds) if k == Frame.OUTPUT)
        assert kinds.index(Frame.ECHO) > last_output
    finally:
        stream.close()


async def test_the_echo_says_a_password_is_read_and_that_someone_else_typed() -> None:
    stream, path, session = await started()
    try:
        session.secret = True
        typed(stream, 0, b"x")
        await until(lambda: len(path.echoes()) == 1, path.changed)
        assert path.echoes()[-1] == (1, ECHO_SECRET)
        session.secret, session.others = False, 3
        typed(stream, 1, b"y")
        await until(lambda: len(path.echoes()) == 2, path.changed)
        assert path.echoes()[-1] == (2, ECHO_OTHERS)
        stream.echo_state()  # the password state changed: said at once, no new offset
        assert path.echoes()[-1] == (2, 0)
    finally:
        stream.close()


async def test_no_echo_for_a_joiner_that_did_not_ask_or_may_not_type() -> None:
    for features, role in (((), "rw"), ((ECHO_FEATURE,), "view")):
        stream, path, _session = await started(features, role)
        try:
            typed(stream, 0, b"a")
            stream.echo_state()
            await asyncio.sleep(stream_mod.ECHO_WAIT * 3)
            assert not path.echoes()
        finally:
            stream.close()


async def test_echoes_go_only_while_the_joiner_asks_for_them() -> None:
    stream, path, _session = await started(asks=False)  # a joiner on a fast link: no guesses
    try:
        typed(stream, 0, b"a")
        stream.echo_state()
        await asyncio.sleep(stream_mod.ECHO_WAIT * 3)
        assert not path.echoes() and not stream._applied  # no timer, no frame
        stream.on_frame(Frame.ECHO, encode_echo_wanted(True)[1:])
        typed(stream, 1, b"b")
        await until(lambda: path.echoes() == [(2, 0)], path.changed)
        stream.on_frame(Frame.ECHO, encode_echo_wanted(False)[1:])
        typed(stream, 2, b"c")
        await asyncio.sleep(stream_mod.ECHO_WAIT * 3)
        assert path.echoes() == [(2, 0)]
        stream.on_frame(Frame.ECHO, b"\x07")  # malformed: said in the log, nothing changes
        assert not stream.echoing
    finally:
        stream.close()


async def test_a_flood_of_keystrokes_keeps_the_echo_state_bounded() -> None:
    stream, path, _session = await started()
    try:
        for i in range(10 * stream_mod.ECHO_PENDING):
            typed(stream, i, b"k")
        assert len(stream._applied) <= stream_mod.ECHO_PENDING
        last = 10 * stream_mod.ECHO_PENDING
        await until(lambda: bool(path.echoes()) and path.echoes()[-1][0] == last, path.changed)
    finally:
        stream.close()


async def test_the_pty_says_when_it_reads_a_password() -> None:
    pty = await PtyProcess.spawn([sys.executable, "-c", "import time; time.sleep(60)"], 80, 24)
    try:
        assert not pty.secret_input()  # a fresh PTY: canonical, echo on
        attrs = termios.tcgetattr(pty.master)  # one termios for both sides of the PTY
        attrs[3] &= ~termios.ECHO  # as getpass does
        termios.tcsetattr(pty.master, termios.TCSANOW, attrs)
        assert pty.secret_input()
        attrs[3] &= ~termios.ICANON  # raw (an editor, readline): not a password prompt
        termios.tcsetattr(pty.master, termios.TCSANOW, attrs)
        assert not pty.secret_input()
    finally:
        pty.terminate()
        pty.close()
