"""beach_cli/link/sctp_tuning.py between two real aiortc peers on this machine's interface: a
SACK for every second DATA packet during bulk output, every byte in order, a gap acknowledged
at once (a packet dropped on purpose), a lone packet after an idle spell acknowledged at once,
the bigger receive buffer on every ICE socket; and stock aiortc wherever the tuning must not
apply (an untested aiortc, BEACH_SCTP_TUNING=off)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcsctptransport import DataChunk

from beach_cli.link.base import HIGH_WATER
from beach_cli.link.rtc import ice_configuration
from beach_cli.link.sctp_tuning import (
    QUICK_AFTER_IDLE,
    QUICK_START,
    RCVBUF,
    SACK_DELAY,
    DelayedSackTransport,
    Tally,
    granted_rcvbuf,
    install,
    socket_buffers,
)

pytestmark = pytest.mark.e2e  # real aiortc peer connections

TIMEOUT = 30.0
MESSAGE = 64 * 1024
REPO = Path(__file__).resolve().parent.parent
STOCK_RCVBUF = 256 * 1024  # what aioice asks for


def kernel_rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


@dataclass
class Pair:
    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    channel: Any  # the sender's end
    inbox: asyncio.Queue[bytes]  # what reaches the receiver's end, in order of arrival

    @property
    def tx(self) -> Any:  # the sender's association (Any: we read its private state)
        assert self.sender.sctp is not None
        return self.sender.sctp

    @property
    def rx(self) -> Any:
        assert self.receiver.sctp is not None
        return self.receiver.sctp


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    assert install(), "the tuning must be installed on the tested aiortc"
    sender = RTCPeerConnection(ice_configuration([]))
    receiver = RTCPeerConnection(ice_configuration([]))
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    remote: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @receiver.on("datachannel")
    def _channel(channel: Any) -> None:
        if not remote.done():
            remote.set_result(channel)

    channel = sender.createDataChannel("test", ordered=True)
    channel.bufferedAmountLowThreshold = HIGH_WATER // 4  # as PeerLink on a fast path
    opened = asyncio.Event()
    channel.on("open", opened.set)
    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.wait_for(opened.wait(), TIMEOUT)
        (await asyncio.wait_for(remote, TIMEOUT)).on("message", inbox.put_nowait)
        yield Pair(sender, receiver, channel, inbox)
    finally:
        await asyncio.wait_for(sender.close(), TIMEOUT)
        await asyncio.wait_for(receiver.close(), TIMEOUT)


async def transfer(p: Pair, payload: bytes) -> bytes:
    """Send `payload` in MESSAGE-sized messages with beach's water marks; what arrived."""
    low = asyncio.Event()
    p.channel.on("bufferedamountlow", low.set)
    for pos in range(0, len(payload), MESSAGE):
        if p.channel.bufferedAmount > HIGH_WATER:
            low.clear()
            await asyncio.wait_for(low.wait(), TIMEOUT)
        p.channel.send(payload[pos : pos + MESSAGE])
    got = bytearray()
    for _ in range(-(-len(payload) // MESSAGE)):
        got += await asyncio.wait_for(p.inbox.get(), TIMEOUT)
    return bytes(got)


async def settled(sctp: Any, what: Callable[[], bool]) -> None:
    """Wait (bounded) for a state of the sender's association that a SACK brings about."""
    for _ in range(round(10 * TIMEOUT / SACK_DELAY)):
        if what():
            return
        await asyncio.sleep(SACK_DELAY / 10)
    raise TimeoutError("the association never settled")


async def warm(pair: Pair) -> None:
    """Spend the association's QUICK_START, then let the receive side go idle."""
    payload = os.urandom(2 * 1024 * 1024)  # ~1,800 packets
    assert await transfer(pair, payload) == payload
    sctp = pair.tx
    await settled(sctp, lambda: sctp._flight_size == 0 and not sctp._sent_queue)
    await asyncio.sleep(SACK_DELAY * 1.5)  # the receive side idles (a condition under test)


def alternate(kinds: list[str], packets: int) -> bool:
    """The first `packets` DATA packets got a SACK each, at once."""
    return kinds[: 2 * packets] == ["data", "sack"] * packets


async def test_one_sack_per_two_data_packets_and_every_byte_in_order(pair: Pair) -> None:
    assert isinstance(pair.rx, DelayedSackTransport)
    tally = Tally.attach(pair.rx, trace=True)
    payload = os.urandom(4 * 1024 * 1024)
    assert await transfer(pair, payload) == payload
    # The last odd packet's SACK comes from the timer: the sender ends with nothing in flight.
    sctp = pair.tx
    await settled(sctp, lambda: sctp._flight_size == 0 and not sctp._sent_queue)
    kinds = [kind for kind, _ in tally.events]
    assert kinds.count("data") == tally.data_in >= len(payload) // 1200
    # Slow start: a SACK per packet (the channel's opening took a few of QUICK_START)...
    assert alternate(kinds, QUICK_START - 8)
    # ...then one per two.
    later = kinds[2 * QUICK_START + 16 :]
    assert 0.45 <= later.count("sack") / later.count("data") <= 0.55, tally


async def test_after_an_idle_spell_slow_start_gets_a_sack_per_packet(pair: Pair) -> None:
    """The first packets of a burst after an idle spell (the sender may have timed out, its
    window down to one packet): one SACK each, then one per two again."""
    await warm(pair)
    tally = Tally.attach(pair.rx, trace=True)
    payload = os.urandom(1024 * 1024)
    assert await transfer(pair, payload) == payload
    kinds = [kind for kind, _ in tally.events]
    assert alternate(kinds, QUICK_AFTER_IDLE)
    later = kinds[2 * QUICK_AFTER_IDLE :]
    assert later.count("sack") <= 0.55 * later.count("data")


async def test_a_gap_is_acknowledged_at_once(pair: Pair) -> None:
    sctp = pair.tx
    tally = Tally.attach(pair.rx, trace=True)
    # Drop the first transmission of a DATA chunk past the association's quick-ack packets.
    lost = (sctp._local_tsn + QUICK_START + 200) % 2**32
    send = sctp._send_chunk

    async def lossy(chunk: Any) -> None:
        if isinstance(chunk, DataChunk) and chunk.tsn == lost and chunk._sent_count == 1:
            return
        await send(chunk)

    sctp._send_chunk = lossy
    payload = os.urandom(2 * 1024 * 1024)
    assert await transfer(pair, payload) == payload  # recovered, and in order
    events = tally.events
    after = next(i for i, (kind, tsn) in enumerate(events) if kind == "data" and tsn > lost)
    assert events[after - 1] != ("data", lost)  # it was lost
    assert events[after + 1][0] == "sack" and events[after + 1][1] >= 1  # at once, with a gap
    # The retransmission that fills the gap is acknowledged at once too.
    filled = next(i for i, event in enumerate(events) if event == ("data", lost))
    assert events[filled + 1] == ("sack", 0)


async def test_a_lone_packet_after_idle_is_acknowledged_at_once(pair: Pair) -> None:
    await warm(pair)
    tally = Tally.attach(pair.rx, trace=True)
    pair.channel.send(b"k")
    assert await asyncio.wait_for(pair.inbox.get(), TIMEOUT) == b"k"
    assert [kind for kind, _ in tally.events[:2]] == ["data", "sack"]


async def test_every_ice_socket_gets_the_bigger_receive_buffer(pair: Pair) -> None:
    granted = granted_rcvbuf()
    rmem_max = kernel_rmem_max()
    # Linux reports twice what it grants (its bookkeeping), capped at twice rmem_max.
    assert granted == 2 * min(RCVBUF, rmem_max)
    for pc in (pair.sender, pair.receiver):
        sizes = socket_buffers(pc)
        assert sizes and all(size == granted for size in sizes), sizes
    if rmem_max >= RCVBUF:
        assert granted > 2 * STOCK_RCVBUF


CAPPED = """
import asyncio, logging
from beach_cli.link import sctp_tuning
logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
sctp_tuning.RCVBUF = 16 * {rmem_max}  # far above the cap, as 4 MiB is above a stock one
from aiortc import RTCPeerConnection
from beach_cli.link.rtc import ice_configuration

async def main():
    a, b = (RTCPeerConnection(ice_configuration([])) for _ in range(2))
    channel, opened = a.createDataChannel("t"), asyncio.Event()
    channel.on("open", opened.set)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 30)
    print("buffers", sorted(set(sctp_tuning.socket_buffers(a) + sctp_tuning.socket_buffers(b))))
    await asyncio.wait_for(a.close(), 30)
    await asyncio.wait_for(b.close(), 30)

asyncio.run(main())
"""


def test_a_low_rmem_max_caps_the_buffer_without_failing() -> None:
    """Where net.core.rmem_max is below what we ask (stock distributions: ~208 KiB), the kernel
    grants its cap, the log says how to get more, and peers connect as before. (rmem_max is
    one setting for the whole machine, so a test cannot lower it: it asks for more instead.)"""
    rmem_max = kernel_rmem_max()
    assert granted_rcvbuf(8 * rmem_max) == 2 * rmem_max
    out = _python(CAPPED.format(rmem_max=rmem_max))
    assert f"buffers [{2 * rmem_max}]" in out
    assert "(raise net.core.rmem_max for more)" in out


def _python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "BEACH_SCTP_TUNING"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


PROBE = """
import logging, aioice.turn, aiortc.rtcpeerconnection as rpc
logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
{before}
from beach_cli.link import rtc
print("installed", rtc.sctp_tuning.install(), rpc.RTCSctpTransport.__name__,
      aioice.turn.UDP_SOCKET_BUFFER_SIZE)
"""


def test_an_untested_aiortc_keeps_stock_sacks_with_one_debug_line() -> None:
    out = _python(PROBE.format(before="import aiortc; aiortc.__version__ = '1.17.0'"))
    assert "installed False RTCSctpTransport" in out
    lines = [line for line in out.splitlines() if "delayed SACKs not installed" in line]
    assert len(lines) == 1 and "1.17.0" in lines[0] and lines[0].startswith("beach.sctp: ")


def test_a_missing_private_method_keeps_stock_sacks() -> None:
    before = "from aiortc.rtcsctptransport import RTCSctpTransport as T; del T._send_sack"
    out = _python(PROBE.format(before=before))
    assert "installed False RTCSctpTransport" in out and "lacks _send_sack" in out


def test_tuning_off_is_stock_aiortc() -> None:
    out = _python(PROBE.format(before=""), BEACH_SCTP_TUNING="off")
    assert f"installed False RTCSctpTransport {STOCK_RCVBUF}" in out
