"""A hostile joiner, built from beach's own modules, against a real `beach host`: it does the
real handshake with a real token, then misbehaves on the data channel. Nothing it does may
grow the host's memory without bound, cost the host unbounded work, or disturb other joiners.
"""

from __future__ import annotations

import asyncio
import collections
import math
import re
import time
from datetime import datetime
from typing import Any

import pytest
from conftest import Procs, shell_ready, start_host, start_join, wait_for_line
from loop_thread import LoopThread
from test_security import RECORDER, EvilServer, evil

from beach_cli import tasks
from beach_cli.host import joiner as joiner_mod
from beach_cli.host import stream as stream_mod
from beach_cli.join.relayed import relay_through
from beach_cli.keys import KeyExchange, Token, parse_token
from beach_cli.link import base as link_mod
from beach_cli.link import rtc
from beach_cli.link.relay import RELAY_CHUNK, RelayLink
from beach_cli.rendezvous import SignalingClient
from beach_cli.server.app import Client, SignalServer
from beach_cli.wire.frames import (
    FRAME_VERSION,
    Frame,
    Hello,
    decode_frame,
    encode_ack,
    encode_frame,
    encode_hello,
    encode_input,
    encode_resize,
)
from beach_cli.wire.keyplane import parse_payload
from beach_cli.wire.signaling import server_message

# The shared program prints a numbered tick every 0.2 s, so a joiner can show it keeps up.
TICKER = ["bash", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i-end; sleep 0.2; done"]


async def confirmed_keys(sig: SignalingClient, token: Token, timeout: float) -> KeyExchange:
    """The joiner's first steps with the real token: introduced by the server, SPAKE2, the
    host's confirmation checked and ours sent. The key is then confirmed on both sides."""
    await sig.send("join", session=token.session)
    msg = await sig.recv(timeout)
    assert msg["type"] == "joined", msg
    kx = KeyExchange("joiner", token.session, msg["peer"], token.role, token.secret)
    await sig.send("signal", to="host", data=await asyncio.to_thread(kx.start))
    while not kx.confirmed:
        msg = await sig.recv(timeout)
        if msg["type"] != "signal":
            continue
        data = parse_payload(msg["data"])
        if data["k"] == "pake":
            await asyncio.to_thread(kx.finish, data)
        elif data["k"] == "confirm":
            kx.verify(data)
            await sig.send("signal", to="host", data=kx.confirmation())
    return kx


class CraftedJoiner:
    """The joiner's side of the handshake (the steps of dial.py), by hand: SPAKE2 with the real
    token, key confirmation, the sealed answer to the host's offer, a data channel, HELLO. What
    it does after that is up to the test."""

    def __init__(self, server: str, token: Token) -> None:
        self.server = server
        self.token = token
        self.link: rtc.PeerLink | None = None
        self.relay: RelayLink | None = None
        self.received: collections.Counter[Frame] = collections.Counter()
        self._changed = asyncio.Event()

    def _frame(self, kind: Frame, body: bytes) -> None:
        self.received[kind] += 1
        self._changed.set()

    async def until(self, kind: Frame, count: int, timeout: float) -> None:
        """Wait until `count` frames of `kind` have come."""
        async with asyncio.timeout(timeout):
            while self.received[kind] < count:
                self._changed.clear()
                await self._changed.wait()

    def _raw(self, data: bytes | str) -> None:
        # Count every frame, PONGs included (Link keeps those to itself).
        kind, _ = decode_frame(data)
        if kind in (Frame.PING, Frame.PONG):
            self.received[kind] += 1
            self._changed.set()

    async def connect(self, timeout: float = 20.0, then_relay: bool = False) -> rtc.PeerLink:
        """With `then_relay`, once the channel has opened this joiner closes it and asks for the
        relay, as one whose wait for the channel ran out at that very moment; it greets the host
        over the relay (`self.relay`)."""
        sig = SignalingClient(self.server)
        await sig.connect(timeout)
        relayed = False
        try:
            t = self.token
            kx = await confirmed_keys(sig, t, timeout)
            await sig.send("signal", to="host", data=kx.seal({"t": "join"}))
            while self.link is None:
                msg = await sig.recv(timeout)
                if msg["type"] != "signal":
                    continue
                data = parse_payload(msg["data"])
                if data["k"] == "sealed":
                    sealed = kx.open(data)
                    if sealed["t"] == "offer":
                        link = rtc.PeerLink([], self._frame, name="attacker")
                        answer = await link.accept_offer(sealed["sdp"])
                        await sig.send(
                            "signal", to="host", data=kx.seal({"t": "answer", "sdp": answer})
                        )
                        self.link = link
            # No heartbeat of our own (Link.wait_open would start one): we decide what we send.
            await asyncio.wait_for(self.link._open.wait(), timeout)
            if then_relay:
                # The host's side is open once its heartbeat's first PING arrives over it.
                self.link.channel.on("message", self._raw)
                await self.until(Frame.PING, 1, timeout)
                await self.link.close()
                self.relay = await relay_through(sig, kx, self._frame)  # it owns `sig` now
                relayed = True
                hello = Hello(FRAME_VERSION, self.token.role, 80, 24, ())
                self.relay.send(encode_hello(hello))
                return self.link
        finally:
            if not relayed:
                await sig.close()
        channel = self.link.channel
        channel.on("message", self._raw)
        hello = Hello(FRAME_VERSION, self.token.role, 80, 24, ())
        self.link.send(encode_hello(hello))
        return self.link

    def stop_reading(self) -> None:
        """From now on our SCTP takes no DATA chunk from the host: nothing it sends is ever
        acknowledged, as from a peer that has stopped reading (everything else, including the
        acknowledgements of what we send, still works)."""
        assert self.link is not None

        async def ignore(chunk: Any) -> None:
            return None

        self.link.pc.sctp._receive_data_chunk = ignore  # type: ignore[union-attr]

    async def flood(self, frame: bytes, seconds: float, every: int = 1) -> int:
        """Send `frame` as fast as our own link takes it (our side stays bounded) until the
        host drops us or time is up; the number sent."""
        link = self.link
        assert link is not None
        sent = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end and not link.lost.is_set():
            try:
                await asyncio.wait_for(link.writable(), max(0.1, end - time.monotonic()))
            except TimeoutError:
                break
            for _ in range(every):
                if not link.send(frame):
                    break
                sent += 1
            await asyncio.sleep(0)
        return sent

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()
        if self.relay is not None:
            await self.relay.close()


def rss_kib(pid: int) -> int:
    """The resident set of a process, from /proc (KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Ticks:
    """Follows the ticker through a real joiner's terminal."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.last = 0

    def advance(self, timeout: float = 10.0) -> int:
        """Wait for a tick newer than the last one seen; its number."""
        deadline = time.monotonic() + timeout
        while True:
            self.proc.expect(r"tick-(\d+)-end", timeout=max(0.1, deadline - time.monotonic()))
            n = int(self.proc.child.match.group(1))
            if n > self.last:
                self.last = n
                return n


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


# -- a joiner that confirms and hangs up in one breath ---------------------------------------


async def confirm_and_hang_up(server: str, token: Token, timeout: float = 20.0) -> None:
    """The right token, the key confirmed, and the connection to the server closed at once:
    the server's "peer_left" reaches the host right behind the confirmation."""
    sig = SignalingClient(server)
    await sig.connect(timeout)
    try:
        await confirmed_keys(sig, token, timeout)
    finally:
        await sig.close()


@pytest.mark.e2e
def test_a_joiner_that_confirms_then_leaves_is_no_wrong_guess(
    procs: Procs, tmp_path, loop_thread: LoopThread
) -> None:
    def back_to_back(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any] | None:
        # The joiner's confirmation and the news that it left, in one write to the host: the
        # host must judge what came first before it lets the attempt go.
        if client.peer_id is not None and parse_payload(msg["data"])["k"] == "confirm":
            SignalServer._on_signal(srv, client, msg)
            assert client.session is not None and client.session.host is not None
            client.session.host.send(server_message("peer_left", peer=client.peer_id))
            srv.state["left"] = srv.state.get("left", 0) + 1
            return None
        return msg

    log_file = tmp_path / "host.log"
    with evil(back_to_back) as st:
        logging = ("--log-file", str(log_file), "--log-level", "info")
        host, info = start_host(procs, tmp_path, st.url, global_opts=logging)
        shell_ready(host)
        token = parse_token(info["join_token"])
        # More than the free guesses: were any counted, the honest joiner below would be held.
        for _ in range(5):
            loop_thread.call(confirm_and_hang_up(st.url, token))
        assert st.server.state["left"] == 5
        st.server.tamper = None
        good = start_join(procs, info)
        shell_ready(good)
        good.send("\x1dd")
        assert good.exit_code() == 0
        assert "slowing joins" not in good.transcript.getvalue()
        host.send("exit\r")
        assert host.exit_code() == 0
    text = log_file.read_text()
    assert "wrong token" not in text and "wrong read-write token" not in text, text


@pytest.mark.e2e
def test_a_switch_to_the_relay_after_the_channel_opened_is_followed(
    procs: Procs, server: str, tmp_path, loop_thread: LoopThread
) -> None:
    """The joiner's wait for the channel can run out just as the host's side opens: the host
    must follow the joiner to the relay, greet it there and stream, not wait for a HELLO on
    the channel it closed (before: "the joiner never said hello" on both ends after 10 s)."""
    log_file = tmp_path / "host.log"
    host, info = start_host(
        procs, tmp_path, server, global_opts=("--log-file", str(log_file), "--log-level", "info")
    )
    shell_ready(host)
    joiner = CraftedJoiner(server, parse_token(info["join_token"]))
    loop_thread.call(joiner.connect(then_relay=True))
    try:
        loop_thread.call(joiner.until(Frame.HELLO, 1, 5))
        loop_thread.call(joiner.until(Frame.SNAPSHOT, 1, 5))
        assert joiner.relay is not None and not joiner.relay.lost.is_set()
    finally:
        loop_thread.call(joiner.close())
    host.send("exit\r")
    assert host.exit_code() == 0
    text = log_file.read_text()
    assert "switches to the relay after the channel opened" in text, text
    assert "never said hello" not in text, text


# -- item: a view-only joiner that floods PINGs and reads nothing -------------------------------

PING_FLOOD_SECONDS = 40.0
BIG_PING = encode_frame(Frame.PING, bytes(200_000))
RSS_BOUND_MIB = 32  # what the host may grow by during the flood (before the fix: +466 MiB)


@pytest.mark.e2e
def test_unread_ping_flood_keeps_host_memory_bounded(
    procs: Procs, server: str, tmp_path, loop_thread: LoopThread
) -> None:
    log_file = tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        command=TICKER,
        global_opts=("--log-file", str(log_file), "--log-level", "info"),
    )
    pid = info["pid"]
    host_ticks = Ticks(host)
    host_ticks.advance()
    viewer = start_join(procs, info, key="view_join_command")
    viewer_ticks = Ticks(viewer)
    viewer_ticks.advance(20)
    attacker = CraftedJoiner(server, parse_token(info["view_token"]))
    link = loop_thread.call(attacker.connect())
    viewer_ticks.advance()
    before = rss_kib(pid)

    attacker.stop_reading()
    flood = loop_thread.submit(attacker.flood(BIG_PING, PING_FLOOD_SECONDS))
    start, start_wall = time.monotonic(), time.time()
    peak, per_second = before, {}
    while not flood.done():
        # The real viewer keeps seeing fresh output all along (and so does the host's terminal,
        # read here so that its writes never block).
        viewer_ticks.advance()
        host_ticks.advance()
        rss = rss_kib(pid)
        peak = max(peak, rss)
        second = int(time.monotonic() - start)
        per_second[second] = max(per_second.get(second, 0), rss // 1024)
    sent = flood.result(5)
    flooded = time.monotonic() - start
    loop_thread.call(attacker.close())
    for _ in range(10):
        viewer_ticks.advance()
    after = rss_kib(pid)
    print(
        f"\nhost RSS before the flood {before // 1024} MiB, peak {peak // 1024} MiB, "
        f"after the attacker left {after // 1024} MiB; {sent} PINGs of {len(BIG_PING)} bytes in "
        f"{flooded:.1f} s; attacker: {link.lost_reason or 'not dropped'}; "
        f"MiB per second: {per_second}"
    )
    assert peak - before < RSS_BOUND_MIB * 1024, f"host RSS grew {(peak - before) // 1024} MiB"
    # The host dropped it while the flood went on (the attacker did not leave of its own
    # accord). Judged by the host's log: the attacker itself may hear of it much later, as its
    # SCTP acknowledges nothing (a close waits for that) on a loaded machine.
    log = log_file.read_text()
    dropped = re.search(r"^(\S+ \S+) INFO beach\.peer: peer \w+: not reading", log, re.M)
    assert dropped, log
    when = datetime.strptime(dropped.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert when - start_wall < PING_FLOOD_SECONDS, "the attacker was not dropped during the flood"
    assert attacker.received[Frame.PONG] == 0
    viewer.send("\x1d")  # Ctrl-] d: the viewer detaches cleanly, having lost nothing
    viewer.send("d")
    assert viewer.exit_code() == 0


HARD_CAP = getattr(link_mod, "HARD_CAP", 8 * 1024 * 1024)

# -- the same bounds on the sealed relay, where no SCTP window stands between us and the peer ----


async def relay_to_nowhere(monkeypatch: pytest.MonkeyPatch) -> tuple[RelayLink, KeyExchange]:
    """The host's RelayLink to a joiner whose relayed frames stop being taken: the server (or
    the joiner behind it) never finishes taking the first message. The joiner's half of the
    key exchange seals what it sends."""
    monkeypatch.setattr(link_mod, "PING_INTERVAL", 0.05)
    monkeypatch.setattr(link_mod, "STALL_TIMEOUT", 1.0, raising=False)  # new with the fix
    host_kx = KeyExchange("host", "s3ss10n", "p33r", "view", "secret")
    joiner_kx = KeyExchange("joiner", "s3ss10n", "p33r", "view", "secret")
    joiner_msg, host_msg = joiner_kx.start(), host_kx.start()
    host_kx.finish(joiner_msg)
    joiner_kx.finish(host_msg)
    joiner_kx.verify(host_kx.confirmation())
    host_kx.verify(joiner_kx.confirmation())
    never = asyncio.Event()

    async def send_text(text: str) -> None:
        await never.wait()

    relay = RelayLink(host_kx, send_text, lambda kind, body: None, "peer p33r")
    return relay, joiner_kx


async def test_relay_answers_no_ping_it_cannot_afford(monkeypatch: pytest.MonkeyPatch) -> None:
    relay, joiner = await relay_to_nowhere(monkeypatch)
    try:
        # Large PINGs (the most a relayed message can carry) get no answer at all.
        for _ in range(500):
            relay.deliver(joiner.seal_frame(encode_frame(Frame.PING, bytes(40_000))))
        assert relay.buffered == 0
        # beach's own 8-byte PING is answered while the link keeps up...
        relay.deliver(joiner.seal_frame(encode_frame(Frame.PING, bytes(8))))
        await asyncio.sleep(0)  # the writer takes the first message (and never finishes it)
        relay.deliver(joiner.seal_frame(encode_frame(Frame.PING, bytes(8))))
        assert 0 < relay.buffered < 100
        # ...and not once the link is behind: a flood of them adds nothing.
        relay.send(encode_frame(Frame.OUTPUT, bytes(RELAY_CHUNK)))
        while relay.buffered <= link_mod.LOW_WATER:
            relay.send(encode_frame(Frame.OUTPUT, bytes(RELAY_CHUNK)))
        behind = relay.buffered
        for _ in range(10_000):
            relay.deliver(joiner.seal_frame(encode_frame(Frame.PING, bytes(8))))
        assert relay.buffered == behind
    finally:
        await relay.close()
    assert relay.buffered == 0  # what the peer never took is let go


async def test_frames_a_peer_provokes_are_coalesced_while_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay, _ = await relay_to_nowhere(monkeypatch)
    try:
        relay.send(encode_frame(Frame.OUTPUT, bytes(8)))
        await asyncio.sleep(0)  # in the writer's hands, stuck there
        while relay.buffered <= link_mod.HIGH_WATER:
            relay.send(encode_frame(Frame.OUTPUT, bytes(RELAY_CHUNK)))
        behind = relay.buffered
        # Thousands of keystroke ACKs, size changes and notices: at most one of each is kept.
        for i in range(5_000):
            assert relay.send_control(encode_ack(i))
            assert relay.send_control(encode_resize(80 + i % 7, 24))
            assert relay.send_control(encode_frame(Frame.NOTICE, b"x" * 1000))
        assert relay.buffered == behind
        assert [f[0] for f in relay._control.values()] == [Frame.ACK, Frame.RESIZE, Frame.NOTICE]
        assert relay._control[Frame.ACK] == encode_ack(4_999)  # the latest says it all
    finally:
        await relay.close()


async def test_a_relayed_peer_that_takes_nothing_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay, joiner = await relay_to_nowhere(monkeypatch)
    try:
        await relay.wait_open(1.0)  # starts the heartbeat (its PINGs are never taken)

        async def keep_talking() -> None:  # the peer is alive and chatty, just not reading
            while not relay.lost.is_set():
                relay.deliver(joiner.seal_frame(encode_frame(Frame.PING, bytes(8))))
                await asyncio.sleep(0.02)

        talker = asyncio.create_task(keep_talking())
        await asyncio.wait_for(relay.lost.wait(), 10)
        await talker
        assert relay.lost_reason.startswith("not reading"), relay.lost_reason
    finally:
        await relay.close()


async def test_a_link_past_the_hard_cap_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    relay, _ = await relay_to_nowhere(monkeypatch)
    try:
        frame = encode_frame(Frame.OUTPUT, bytes(RELAY_CHUNK))
        for _ in range(2 * HARD_CAP // RELAY_CHUNK):  # a sender ignoring `writable`
            if not relay.send(frame):
                break
        assert relay.lost.is_set() and relay.lost_reason.startswith("not reading")
        assert relay.buffered <= HARD_CAP + 2 * RELAY_CHUNK
    finally:
        await relay.close()


# -- snapshot requests: each costs the host a full screen ----------------------------------------

SNAPSHOT_BURST = getattr(stream_mod, "SNAPSHOT_BURST", 3)  # (the old code has no pacing)
SNAPSHOT_RATE = getattr(stream_mod, "SNAPSHOT_RATE", 1.0)
SNAPSHOT_REQUESTS = 5_000
SNAPSHOT_FLOOD_SECONDS = 10.0


@pytest.mark.e2e
def test_snapshot_request_flood_is_paced(
    procs: Procs, server: str, tmp_path, loop_thread: LoopThread
) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    host.send("for i in $(seq 1 40); do echo screen-line-$i; done\r")
    host.expect("screen-line-40")
    typist = start_join(procs, info)  # a real read-write joiner, typing throughout
    shell_ready(typist)
    attacker = CraftedJoiner(server, parse_token(info["view_token"]))
    loop_thread.call(attacker.connect())
    loop_thread.call(attacker.until(Frame.SNAPSHOT, 1, 10))  # the one every joiner starts with

    async def ask() -> float:
        """Reads everything; asks for a fresh screen 500 times a second. Seconds taken."""
        link = attacker.link
        assert link is not None
        start = time.monotonic()
        ticks = int(SNAPSHOT_FLOOD_SECONDS * 10)
        for tick in range(ticks):
            for _ in range(SNAPSHOT_REQUESTS // ticks):
                assert link.send(encode_frame(Frame.SNAPSHOT))
            if tick < ticks - 1:
                await asyncio.sleep(0.1)
        # The last requests are answered too, at their turn (an honest joiner that asks
        # discards output until its snapshot comes: a request is paced, never dropped).
        await attacker.until(Frame.SNAPSHOT, attacker.received[Frame.SNAPSHOT] + 1, 5)
        return time.monotonic() - start

    flood = loop_thread.submit(ask())
    n = 0
    while not flood.done():  # the host answers a real joiner all along
        n += 1
        typist.send(f"echo typed-$((1000+{n}))\r")
        typist.expect(f"typed-{1000 + n}")
        host.expect(f"typed-{1000 + n}")
    took = flood.result(5)
    served = attacker.received[Frame.SNAPSHOT] - 1
    bound = SNAPSHOT_BURST + math.ceil(took * SNAPSHOT_RATE)
    print(f"\n{SNAPSHOT_REQUESTS} snapshot requests in {took:.1f} s: {served} snapshots served")
    assert served <= bound
    assert attacker.link is not None and not attacker.link.lost.is_set()
    loop_thread.call(attacker.close())
    typist.send("exit\r")
    assert host.exit_code() == 0


# -- cancellation is never swallowed --------------------------------------------------------------


class StubHost:
    """Just enough of HostSession for a Joiner that never gets past its handshake."""

    class opts:
        connect_timeout = 1.0

    def peer_gone(self, peer: Any) -> None:
        pass

    def failed_attempt(self, peer: Any) -> None:
        pass


async def test_flushed_lets_the_callers_cancellation_through() -> None:
    peer = joiner_mod.Joiner(StubHost(), "p1", "", [])  # type: ignore[arg-type]
    sender = asyncio.create_task(asyncio.sleep(3600))  # an exit frame that never goes out
    peer._stream._sender = sender
    try:
        waiter = asyncio.create_task(peer.flushed(60))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not sender.cancelled()  # flushed never touches the sender
        # A sender that was itself cancelled (its link was lost) is just an end: no error.
        sender.cancel()
        await asyncio.wait({sender})
        await asyncio.wait_for(peer.flushed(5), 5)
    finally:
        sender.cancel()
        await tasks.stop(peer.task)


async def test_stopping_a_slow_task_lets_the_callers_cancellation_through() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await release.wait()  # cleanup that takes a while

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(tasks.stop(task))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    release.set()
    await asyncio.wait({task})
    assert task.cancelled()
    # A task that ends with its own cancellation or an error is stopped quietly.
    await tasks.stop(asyncio.create_task(asyncio.sleep(3600)))


LOSE_FIRST_MESSAGE = """
# sitecustomize for a `beach join` under test: aiortc loses the joiner's first HELLO.
import aiortc.rtcdatachannel as channel_module

_send = channel_module.RTCDataChannel.send
_lost = []


def send(self, data):
    if not _lost and data[:1] == bytes([HELLO]):  # the first HELLO goes nowhere
        _lost.append(data)
        return None
    return _send(self, data)


channel_module.RTCDataChannel.send = send
"""


@pytest.mark.e2e
def test_a_hello_lost_as_the_channel_opens_is_said_again(
    procs: Procs, server: str, tmp_path
) -> None:
    """aiortc now and then loses a message sent the moment a data channel opens; `beach join`
    says HELLO again while unanswered, and the host, which takes only the first, greets it."""
    inject = tmp_path / "inject"
    inject.mkdir()
    code = LOSE_FIRST_MESSAGE.replace("HELLO]", f"{int(Frame.HELLO)}]")
    (inject / "sitecustomize.py").write_text(code)
    log_file = tmp_path / "host.log"
    host, info = start_host(
        procs, tmp_path, server, global_opts=("--log-file", str(log_file), "--log-level", "info")
    )
    shell_ready(host)
    # Its HELLO on the channel (an early-relay joiner says it over the relay first).
    joiner = start_join(procs, info, PYTHONPATH=str(inject), BEACH_EARLY_RELAY="0")
    shell_ready(joiner)
    joiner.send("echo greeted-$((6*7))\r")
    host.expect("greeted-42")
    assert "greeted 1.0 s after the channel opened" in log_file.read_text()
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    host.send("exit\r")
    assert host.exit_code() == 0


@pytest.mark.e2e
def test_a_crafted_viewer_that_types_is_dropped_at_the_host(
    procs: Procs, server: str, tmp_path, loop_thread: LoopThread
) -> None:
    """beach's own viewer sends no keys; one built to send them anyway gets them dropped at
    the host, and the shared program never sees them."""
    log = tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        command=["python3", "-c", RECORDER],
        global_opts=("--log-file", str(log), "--log-level", "info"),
    )
    host.expect("recorder-ready")
    writer = start_join(procs, info)
    writer.expect("recorder-ready")
    attacker = CraftedJoiner(server, parse_token(info["view_token"]))
    loop_thread.call(attacker.connect())
    loop_thread.call(attacker.until(Frame.SNAPSHOT, 1, 10))

    async def type_anyway() -> None:
        assert attacker.link is not None
        assert attacker.link.send(encode_input(0, b"VIEWER-KEYS"))

    loop_thread.call(type_anyway())
    wait_for_line(log, "dropping input from a view joiner")
    writer.send("WRITER-END")
    for p in (host, writer):
        p.expect("WRITER-END")
    assert host.exit_code() == 0
    assert "VIEWER-KEYS" not in host.transcript.getvalue()
