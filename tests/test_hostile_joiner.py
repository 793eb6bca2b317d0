"""A hostile joiner, built from beach's own modules, against a real `beach host`: it does the
real handshake with a real token, then misbehaves on the data channel. Nothing it does may
grow the host's memory without bound, cost the host unbounded work, or disturb other joiners.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Procs, start_host, start_join

from beach_cli import rtc
from beach_cli.keys import KeyExchange, Token, parse_token
from beach_cli.protocol import (
    FRAME_VERSION,
    Frame,
    Hello,
    decode_frame,
    encode_frame,
    encode_hello,
    parse_payload,
)
from beach_cli.signaling import SignalingClient

# The shared program prints a numbered tick every 0.2 s, so a joiner can show it keeps up.
TICKER = ["bash", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i-end; sleep 0.2; done"]


class LoopThread:
    """An asyncio loop in a thread: the attacker runs there while the test drives pexpect."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class CraftedJoiner:
    """The joiner's side of the handshake (the steps of dial.py), by hand: SPAKE2 with the real
    token, key confirmation, the sealed answer to the host's offer, a data channel, HELLO. What
    it does after that is up to the test."""

    def __init__(self, server: str, token: Token) -> None:
        self.server = server
        self.token = token
        self.link: rtc.PeerLink | None = None
        self.received: collections.Counter[Frame] = collections.Counter()
        self.on_frame: Callable[[Frame, bytes], None] | None = None

    def _frame(self, kind: Frame, body: bytes) -> None:
        self.received[kind] += 1
        if self.on_frame is not None:
            self.on_frame(kind, body)

    def _raw(self, data: bytes | str) -> None:
        # Count every frame, PONGs included (Link keeps those to itself).
        kind, _ = decode_frame(data)
        if kind in (Frame.PING, Frame.PONG):
            self.received[kind] += 1

    async def connect(self, timeout: float = 20.0) -> rtc.PeerLink:
        sig = SignalingClient(self.server)
        await sig.connect(timeout)
        try:
            t = self.token
            await sig.send("join", session=t.session)
            msg = await sig.recv(timeout)
            assert msg["type"] == "joined", msg
            kx = KeyExchange("joiner", t.session, msg["peer"], t.role, t.secret)
            await sig.send("signal", to="host", data=await asyncio.to_thread(kx.start))
            while self.link is None:
                msg = await sig.recv(timeout)
                if msg["type"] != "signal":
                    continue
                data = parse_payload(msg["data"])
                if data["k"] == "pake":
                    await asyncio.to_thread(kx.finish, data)
                elif data["k"] == "confirm":
                    kx.verify(data)
                    await sig.send("signal", to="host", data=kx.confirmation())
                    await sig.send("signal", to="host", data=kx.seal({"t": "join"}))
                elif data["k"] == "sealed":
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
        finally:
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
            await asyncio.wait_for(link.writable(), max(0.1, end - time.monotonic()))
            for _ in range(every):
                if not link.send(frame):
                    break
                sent += 1
            await asyncio.sleep(0)
        return sent

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()


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


# -- item: a view-only joiner that floods PINGs and reads nothing -------------------------------

PING_FLOOD_SECONDS = 40.0
BIG_PING = encode_frame(Frame.PING, bytes(200_000))
RSS_BOUND_MIB = 32  # what the host may grow by during the flood (before the fix: +466 MiB)


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
    start = time.monotonic()
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
    # The host dropped it (the attacker did not leave of its own accord).
    assert flooded < PING_FLOOD_SECONDS, "the attacker was never dropped"
    log = log_file.read_text()
    assert re.search(r"peer \w+: not reading", log), log
    assert attacker.received[Frame.PONG] == 0
    viewer.send("\x1d")  # Ctrl-] d: the viewer detaches cleanly, having lost nothing
    viewer.send("d")
    assert viewer.exit_code() == 0
