"""One end of the transport A/B (bench/transport.py), run as a script: a bare aiortc data channel
between two processes, beach's water marks, N bytes in fixed-size messages from the sender to
the receiver, then a one-byte "done" back. Stock or tuned aiortc is chosen by the environment
(BEACH_SCTP_TUNING=off is stock), so both ends of a pair run the same code.

Signaling is one JSON line each way through the parent: the sender prints {"offer"}, reads
{"answer"}; the receiver reads {"offer"}, prints {"answer"}. Each prints one {"result"} line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aioice.turn
from aioice.ice import StunProtocol
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcsctptransport import DataChunk

from beach_cli.link import sctp_tuning
from beach_cli.link.base import HIGH_WATER
from beach_cli.link.rtc import ice_configuration
from beach_cli.link.sctp_tuning import Tally, socket_buffers

DONE = b"!"
BYE = b"."
PING = b"P"  # then 7 bytes: 8 in all, a keystroke's echo
_held = [0.0]  # --delay


async def _line() -> dict[str, Any]:
    text = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not text:
        raise SystemExit("parent closed stdin")
    return dict(json.loads(text))


def _say(**msg: Any) -> None:
    print(json.dumps(msg), flush=True)


def _cpu() -> float:
    return time.process_time()


def _figures(pc: RTCPeerConnection, tally: Tally, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "wall": wall,
        "cpu": cpu,
        "data_in": tally.data_in,
        "sacks_out": tally.sacks_out,
        "data_out": tally.data_out,
        "rcvbuf": socket_buffers(pc),
        "sctp": type(pc.sctp).__name__,
    }


async def sender(total: int, size: int, pings: int, timeout: float) -> None:
    pc = RTCPeerConnection(ice_configuration([]))
    channel = pc.createDataChannel("bench", ordered=True)
    channel.bufferedAmountLowThreshold = HIGH_WATER // 4  # as PeerLink on a fast path
    opened, low, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    channel.on("open", opened.set)
    channel.on("bufferedamountlow", low.set)
    pongs: asyncio.Queue[bytes] = asyncio.Queue()

    def on_message(message: bytes) -> None:
        if message == DONE:
            done.set()
        elif message[:1] == PING:
            pongs.put_nowait(message)

    channel.on("message", on_message)
    await pc.setLocalDescription(await pc.createOffer())
    _say(offer=pc.localDescription.sdp)
    answer = await _line()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["answer"], type="answer"))
    await asyncio.wait_for(opened.wait(), timeout)
    assert pc.sctp is not None
    tally = Tally.attach(pc.sctp)
    body = bytes(range(256)) * (size // 256 + 1)
    t0, c0 = time.perf_counter(), _cpu()
    sent, seq = 0, 0
    while sent < total:
        if channel.bufferedAmount > HIGH_WATER:
            low.clear()
            await asyncio.wait_for(low.wait(), timeout)
        n = min(size, total - sent)
        channel.send(seq.to_bytes(8, "big") + body[: n - 8])
        sent, seq = sent + n, seq + 1
    await asyncio.wait_for(done.wait(), timeout)
    figures = _figures(pc, tally, time.perf_counter() - t0, _cpu() - c0)
    # Then keystroke-sized round trips, the first right behind the bulk's last packets.
    trips = []
    for i in range(pings):
        t = time.perf_counter()
        channel.send(PING + i.to_bytes(7, "big"))
        await asyncio.wait_for(pongs.get(), timeout)
        trips.append(time.perf_counter() - t)
    _say(result=figures | {"trips": trips})
    # Say goodbye in a message: with --delay, what pc.close() sends is still held when the
    # socket closes, so the receiver would never hear of it. Give it time to leave.
    channel.send(BYE)
    await asyncio.sleep(2 * _held[0])
    await asyncio.wait_for(pc.close(), 5)


def _lose_first(sctp: Any, payload: bytes) -> None:
    """The first transmission of the DATA chunk that carries `payload` is lost, as on a lossy
    link: only a retransmission (the T3 timer's, with nothing behind it) delivers it."""
    send = sctp._send_chunk

    async def lossy(chunk: Any) -> None:
        if isinstance(chunk, DataChunk) and chunk._sent_count == 1 and chunk.user_data == payload:
            return
        await send(chunk)

    sctp._send_chunk = lossy


async def receiver(total: int, timeout: float, lose_echo: int) -> None:
    pc = RTCPeerConnection(ice_configuration([]))
    finished, hung_up = asyncio.Event(), asyncio.Event()
    state: dict[str, Any] = {"got": 0, "seq": 0, "t0": 0.0, "c0": 0.0, "ordered": True}

    def on_channel(channel: Any) -> None:
        channel.on("close", hung_up.set)

        @channel.on("message")
        def on_message(message: bytes) -> None:
            if finished.is_set():
                if message[:1] == PING:
                    channel.send(message)  # the echo
                elif message == BYE:
                    hung_up.set()
                return
            if state["got"] == 0:
                state["t0"], state["c0"] = time.perf_counter(), _cpu()
            state["ordered"] &= int.from_bytes(message[:8], "big") == state["seq"]
            state["seq"] += 1
            state["got"] += len(message)
            if state["got"] >= total and not finished.is_set():
                state["wall"], state["cpu"] = time.perf_counter() - state["t0"], _cpu()
                channel.send(DONE)
                finished.set()

    pc.on("datachannel", on_channel)
    offer = await _line()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["offer"], type="offer"))
    assert pc.sctp is not None
    tally = Tally.attach(pc.sctp)
    if lose_echo >= 0:
        _lose_first(pc.sctp, PING + lose_echo.to_bytes(7, "big"))
    await pc.setLocalDescription(await pc.createAnswer())
    _say(answer=pc.localDescription.sdp)
    await asyncio.wait_for(finished.wait(), timeout)
    figures = _figures(pc, tally, state["wall"], state["cpu"] - state["c0"])
    _say(result=figures | {"bytes": state["got"], "ordered": state["ordered"]})
    # The sender says BYE once "done" and the echoes arrived; closing first could lose them.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hung_up.wait(), timeout)
    await asyncio.wait_for(pc.close(), 5)


def _delay_datagrams(seconds: float) -> None:
    """A long link without netem: every datagram of the connection leaves `seconds` late, in
    order (ICE's own checks go at once, so connecting takes no longer)."""

    _held[0] = seconds

    async def send_data(self: StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        asyncio.get_running_loop().call_later(seconds, self.transport.sendto, data, addr)

    StunProtocol.send_data = send_data  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("sender", "receiver"))
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--message", type=int, default=64 * 1024)
    p.add_argument("--pings", type=int, default=100)
    p.add_argument(
        "--rcvbuf",
        type=int,
        help="ask for this receive buffer instead (as a low net.core.rmem_max would cap it)",
    )
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument(
        "--delay",
        type=float,
        default=0.0,
        help="hold each datagram we send this "
        "many seconds (both ends: a round trip of twice this; no bandwidth limit)",
    )
    p.add_argument("--quick-start", type=int, help="override sctp_tuning.QUICK_START")
    p.add_argument(
        "--lose-echo",
        type=int,
        default=-1,
        help="the receiver loses the first transmission of this echo (0 is the first)",
    )
    args = p.parse_args()
    if args.rcvbuf:
        aioice.turn.UDP_SOCKET_BUFFER_SIZE = args.rcvbuf
    if args.delay:
        _delay_datagrams(args.delay)
    if args.quick_start is not None:
        sctp_tuning.QUICK_START = args.quick_start
    if args.role == "sender":
        coro = sender(args.bytes, args.message, args.pings, args.timeout)
    else:
        coro = receiver(args.bytes, args.timeout, args.lose_echo)
    try:
        import uvloop  # what `beach` itself runs on (cli.py)

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
