"""A joiner's stream (host/stream.py) on a path of known pace: output the path cannot deliver
promptly is skipped for a short fresh screen, and a large unit goes a frame at a time. The
path here is beach's own Link with a transmit that holds what it is given (a path that takes
nothing), and the stream is the real one; only the shared session is a stand-in."""

from __future__ import annotations

import asyncio

from test_link_pace import _Path

from beach_cli.host import stream as stream_mod
from beach_cli.host.handshake import Admission
from beach_cli.wire.frames import FRAME_VERSION, Frame, Hello, decode_frame, encode_hello


class Session:
    """What a stream asks of the shared session: its screen."""

    def __init__(self) -> None:
        self.snapshots: list[int | None] = []
        self.changed = asyncio.Event()

    def snapshot(self, clear_scrollback: bool = True, recent: int | None = None) -> bytes:
        self.snapshots.append(recent)
        self.changed.set()
        return b"\x1b[H\x1b[2Jthe screen"

    def keystrokes(self, data: bytes, writer: str) -> None:
        pass

    def writes_by_others(self, writer: str) -> int:
        return 0

    def sizes_changed(self) -> None:
        pass


class Recording(_Path):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []
        self.changed = asyncio.Event()

    def _transmit(self, frame: bytes) -> None:
        super()._transmit(frame)
        self.frames.append(frame)
        self.changed.set()


async def until(condition, changed: asyncio.Event, timeout: float = 5.0) -> None:
    """Let the sender task run until `condition` holds (`changed`: something happened)."""
    async with asyncio.timeout(timeout):
        while not condition():
            changed.clear()
            await changed.wait()


async def started(rate: float) -> tuple[stream_mod.Stream, Recording, Session]:
    session, path = Session(), Recording()
    path.pace.rate = rate
    stream = stream_mod.Stream(session, "p1", Admission(role="view"))  # type: ignore[arg-type]
    stream.on_frame(Frame.HELLO, encode_hello(Hello(FRAME_VERSION, "view", 80, 24, ()))[1:])
    stream.start(path, 80, 24)
    await asyncio.sleep(0)  # the sender sends the first screen
    return stream, path, session


async def test_output_the_path_cannot_deliver_promptly_is_skipped_for_a_short_screen() -> None:
    stream, path, session = await started(rate=50_000.0)  # 0.4 Mbit/s, and nothing drains
    try:
        assert session.snapshots == [None]  # the first screen has all its history
        path.held = 10**9  # the path is full: everything now waits with the stream
        for _ in range(20):  # 20 kB queued is 0.4 s at this pace: more than PROMPT
            stream.output(b"o" * 1000, 1000)
        assert stream._resync and stream._queued < 20_000  # dropped, a fresh screen due
        path.held = 0
        path._drained()
        await until(lambda: len(session.snapshots) == 2, session.changed)
        assert session.snapshots == [None, stream_mod.SKIP_HISTORY]
        assert decode_frame(path.frames[-1])[0] == Frame.SNAPSHOT
    finally:
        stream.close()


async def test_output_the_path_can_deliver_soon_is_kept() -> None:
    stream, path, _ = await started(rate=10_000_000.0)
    try:
        path.held = 10**9
        for _ in range(20):
            stream.output(b"o" * 1000, 1000)
        assert stream._queued == 20_000 and not stream._resync
    finally:
        stream.close()


async def test_a_large_unit_goes_a_frame_at_a_time_on_a_slow_path() -> None:
    stream, path, _ = await started(rate=250_000.0)  # 2 Mbit/s: 12.5 kB frames
    try:
        sent = len(path.frames)
        path.held = path.high_water - 1  # room for one frame, then the sender waits
        stream.output(bytes(40_000), 40_000)
        await until(lambda: len(path.frames) > sent, path.changed)
        assert [len(f) - 1 for f in path.frames[sent:]] == [12_500]
        assert stream._queued == 40_000 - 12_500  # the rest can still be skipped
    finally:
        stream.close()


async def test_a_flood_sends_the_screen_a_few_times_a_second_instead_of_every_byte() -> None:
    stream, path, session = await started(rate=1e9)  # a fast path: the flood alone decides
    try:
        sent = len(path.frames)
        # 2 MB in 8 kB reads over about half a second: far beyond FLOOD_BYTES a window.
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 0.5:
            stream.output(b"o" * 8192, 8192)
            await asyncio.sleep(0.002)
        await until(lambda: not stream._resync, path.changed)
        frames = [decode_frame(f)[0] for f in path.frames[sent:]]
        snapshots = frames.count(Frame.SNAPSHOT)
        # Some output went before the flood was seen; then screens, at most one a tenth.
        assert 2 <= snapshots <= 0.5 / stream_mod.FLOOD_INTERVAL + 2, frames
        assert frames[-1] == Frame.SNAPSHOT  # it ends on the current screen
        assert session.snapshots[1:] == [stream_mod.SKIP_HISTORY] * snapshots
        out = sum(len(f) for f in path.frames[sent:] if f[0] == Frame.OUTPUT)
        assert out <= stream_mod.FLOOD_BYTES + 8192  # the bytes before the flood was seen
    finally:
        stream.close()


async def test_output_below_the_flood_rate_is_sent_whole() -> None:
    stream, path, session = await started(rate=1e9)
    try:
        sent = len(path.frames)
        for _ in range(20):  # 160 kB in one burst: less than a flood
            stream.output(b"o" * 8192, 8192)
        await until(lambda: not stream._queue, path.changed)
        assert session.snapshots == [None]
        assert sum(len(f) - 1 for f in path.frames[sent:]) == 20 * 8192
    finally:
        stream.close()


async def test_after_a_flood_and_a_pause_an_echo_goes_out_at_once() -> None:
    stream, path, _ = await started(rate=1e9)
    try:
        for _ in range(40):
            stream.output(b"o" * 8192, 8192)  # a flood
        assert stream._flooding
        await until(lambda: not stream._resync, path.changed)
        stream._window_at -= 3 * stream_mod.FLOOD_WINDOW  # as after a pause to type
        sent = len(path.frames)
        stream.output(b"x", 1)
        assert [(f[0], f[1:]) for f in path.frames[sent:]] == [(Frame.OUTPUT, b"x")]
    finally:
        stream.close()
