"""link/handover.py: one link across the move from the sealed relay to the data channel. Two
real RelayLinks, sealed with a real key exchange, through an in-memory "server" the tests can
make slow or hostile; the data channel is an in-memory Link opened when the test says."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from test_keys import pair

from beach_cli.link import handover
from beach_cli.link.base import Link
from beach_cli.link.handover import MOVE, HandoverLink
from beach_cli.link.relay import RelayLink
from beach_cli.wire.frames import Frame, encode_frame

WAIT = 5.0  # s: every wait here


class Pipe(Link):
    """An in-memory data channel: frames reach the other end on a later loop turn."""

    path = "peer-to-peer"

    def __init__(self, on_frame: Callable[[Frame, bytes], None], name: str) -> None:
        super().__init__(on_frame, name)
        self.peer: Pipe | None = None

    def open(self) -> None:
        self._opened()

    def _transmit(self, frame: bytes) -> None:
        assert self.peer is not None
        asyncio.get_running_loop().call_soon(self.peer._received, frame)

    @property
    def buffered(self) -> int:
        return 0

    @property
    def usable(self) -> bool:
        return self._open.is_set() and not self.lost.is_set()

    async def _shutdown(self) -> None:
        pass


class Server:
    """Relays sealed text in order, each message `delay` s late; `hold` keeps what comes
    from then on (a server withholding the rest, the marker among it)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.hold = False
        self.held: list[str] = []
        self._last = 0.0

    def to(self, relay: Callable[[], RelayLink]) -> Callable[[str], Any]:
        async def send_text(text: str) -> None:
            if self.hold:
                self.held.append(text)
                return
            loop = asyncio.get_running_loop()
            self._last = max(self._last, loop.time() + self.delay)  # in order, however late
            loop.call_at(self._last, relay().deliver, text)

        return send_text


class End:
    def __init__(self) -> None:
        self.frames: list[tuple[Frame, bytes]] = []
        self.link: HandoverLink

    def on_frame(self, kind: Frame, body: bytes) -> None:
        self.frames.append((kind, body))

    def outputs(self) -> list[bytes]:
        return [body for kind, body in self.frames if kind == Frame.OUTPUT]


async def ends(server: Server, open_within: float = WAIT) -> tuple[End, End, Pipe, Pipe]:
    host_kx, joiner_kx = pair()
    h, j = End(), End()
    h_relay = RelayLink(host_kx, server.to(lambda: j_relay), h.on_frame, "host relay")
    j_relay = RelayLink(joiner_kx, server.to(lambda: h_relay), j.on_frame, "joiner relay")
    h_pipe, j_pipe = Pipe(h.on_frame, "host pipe"), Pipe(j.on_frame, "joiner pipe")
    h_pipe.peer, j_pipe.peer = j_pipe, h_pipe
    h.link = HandoverLink(h_relay, h_pipe, h.on_frame, "host", open_within)
    j.link = HandoverLink(j_relay, j_pipe, j.on_frame, "joiner", open_within)
    return h, j, h_pipe, j_pipe


async def until(check: Callable[[], bool]) -> None:
    """Until `check()` holds: it spans several links' state, which no one event says."""
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 (bounded by WAIT)
            await asyncio.sleep(0.01)


def out(n: int) -> bytes:
    return encode_frame(Frame.OUTPUT, b"%d," % n)


async def test_frames_keep_their_order_across_the_move_both_ways() -> None:
    server = Server(delay=0.05)  # the relay is slower than the channel: frames overtake
    h, j, h_pipe, j_pipe = await ends(server)
    try:
        for n in range(60):
            if n == 20:
                h_pipe.open()
                j_pipe.open()
            h.link.send(out(n))
            j.link.send(encode_frame(Frame.INPUT, n.to_bytes(8, "big") + b"k"))
            await asyncio.sleep(0.005)  # a typist: frames before, during and after the move
        await until(lambda: len(j.outputs()) == 60 and h.link.moved and j.link.moved)
        assert j.outputs() == [b"%d," % n for n in range(60)]
        inputs = [body[:8] for kind, body in h.frames if kind == Frame.INPUT]
        assert inputs == [n.to_bytes(8, "big") for n in range(60)]
        assert h.link.path == j.link.path == "peer-to-peer"
        assert h.link.relay.lost.is_set()  # retired once drained
        assert not h.link.lost.is_set() and not j.link.lost.is_set()
        # After the move everything goes over the channel.
        h.link.send(out(60))
        await until(lambda: len(j.outputs()) == 61)
    finally:
        await h.link.close()
        await j.link.close()


async def test_a_withheld_marker_ends_the_link_with_one_line(monkeypatch) -> None:
    monkeypatch.setattr(handover, "HOLD_WAIT", 0.3)
    server = Server()
    h, j, h_pipe, j_pipe = await ends(server)
    try:
        h.link.send(out(0))
        await until(lambda: j.outputs() == [b"0,"])
        server.hold = True  # the server keeps the marker (and everything after it)
        h_pipe.open()
        j_pipe.open()
        await until(lambda: h.link._out is h_pipe)
        h.link.send(out(1))  # over the channel: held, waiting for the marker
        async with asyncio.timeout(WAIT):
            await j.link.lost.wait()
        assert "marker did not come through the server within" in j.link.lost_reason
        assert j.outputs() == [b"0,"]  # nothing out of order was shown
    finally:
        await h.link.close()
        await j.link.close()


async def test_a_flood_on_the_channel_before_the_marker_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(handover, "HOLD_BYTES", 64 * 1024)
    server = Server()
    h, j, h_pipe, j_pipe = await ends(server)
    try:
        server.hold = True
        h_pipe.open()
        j_pipe.open()
        await until(lambda: h.link._out is h_pipe)
        for _ in range(20):  # 160 KiB that may not be shown before the marker
            h_pipe.send(encode_frame(Frame.OUTPUT, b"x" * 8192))
        async with asyncio.timeout(WAIT):
            await j.link.lost.wait()
        assert "overran 64 KiB" in j.link.lost_reason
        assert "before its marker came through the server" in j.link.lost_reason
        assert j.outputs() == []
        assert not j.link._held  # dropped, not kept
    finally:
        await h.link.close()
        await j.link.close()


async def test_a_second_marker_and_one_on_the_channel_are_ignored(caplog) -> None:
    caplog.set_level(logging.WARNING, "beach.link")
    server = Server()
    h, j, h_pipe, j_pipe = await ends(server)
    try:
        h_pipe.open()
        j_pipe.open()
        await until(lambda: h.link.moved and j.link.moved)
        h_pipe.send(MOVE)  # on the wrong path
        h_pipe.send(MOVE)
        h.link.send(out(1))
        await until(lambda: j.outputs() == [b"1,"])
        lines = [r.getMessage() for r in caplog.records]
        assert lines.count("joiner: a HANDOVER marker on the data channel: ignored") == 1
        assert not j.link.lost.is_set()
    finally:
        await h.link.close()
        await j.link.close()


async def test_a_marker_twice_on_the_relay_is_ignored(caplog) -> None:
    caplog.set_level(logging.WARNING, "beach.link")
    server = Server(delay=0.05)
    h, j, _, _ = await ends(server)
    try:
        h.link.relay.send(MOVE)  # a hostile peer's early marker: the real one comes later
        await until(lambda: j.link.moved_in.is_set())
        h.link.relay.send(out(7))  # relayed after its own marker: dropped
        h.link.relay.send(MOVE)
        await until(lambda: any("second HANDOVER" in r.getMessage() for r in caplog.records))
        assert any("relayed frame after the move" in r.getMessage() for r in caplog.records)
        assert j.outputs() == []
        assert not j.link.lost.is_set()
    finally:
        await h.link.close()
        await j.link.close()


async def test_no_channel_stays_on_the_relay() -> None:
    server = Server()
    h, j, _, _ = await ends(server, open_within=0.2)  # the channels never open
    try:
        await until(lambda: h.link.relayed and j.link.relayed)
        h.link.send(out(1))
        j.link.send(encode_frame(Frame.INPUT, bytes(8) + b"k"))
        await until(lambda: j.outputs() == [b"1,"] and len(h.frames) == 1)
        assert h.link.path == j.link.path == "server relay"
        assert h.link.through_server and not h.link.lost.is_set()
    finally:
        await h.link.close()
        await j.link.close()


async def test_losing_the_relay_before_the_move_loses_the_link() -> None:
    server = Server()
    h, j, _, _ = await ends(server)
    try:
        j.link.relay.mark_lost("the host left")
        async with asyncio.timeout(WAIT):
            await j.link.lost.wait()
        assert j.link.lost_reason == "the host left"
    finally:
        await h.link.close()
        await j.link.close()


async def test_control_frames_waiting_for_the_relay_go_before_the_marker() -> None:
    server = Server(delay=0.02)
    h, j, h_pipe, j_pipe = await ends(server)
    try:
        # Held by the relay (as behind a backlog), then the channel opens.
        h.link.relay._control[Frame.NOTICE] = encode_frame(Frame.NOTICE, b"held")
        h_pipe.open()
        j_pipe.open()
        await until(lambda: h.link._out is h_pipe)
        h.link.send(out(9))  # over the channel, after the marker
        await until(lambda: j.outputs() == [b"9,"])
        kinds = [kind for kind, _ in j.frames]
        assert kinds.index(Frame.OUTPUT) == len(kinds) - 1  # the notices came first
    finally:
        await h.link.close()
        await j.link.close()
