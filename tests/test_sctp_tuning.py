"""beach_cli/link/sctp_tuning.py between two real aiortc peers on this machine's interface: a
SACK for every second DATA packet during bulk output, every byte in order, a gap acknowledged
at once (a packet dropped on purpose), a lone packet after an idle spell and a small one amid
traffic acknowledged at once,
the bigger receive buffer on every ICE socket; through a UDP relay that delays every datagram
(a link with a known round trip), the retransmission timeout at its floor, a dropped packet
resent by the T3 timer after it, backed off and reset, one with a packet behind it resent on
the first SACK that shows it missing (early retransmit), and no spurious retransmission while
SACKs are held; and stock aiortc wherever the tuning must not apply (an untested aiortc,
BEACH_SCTP_TUNING=off, BEACH_SCTP_RTO=stock for the timeout alone)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcsctptransport import SCTP_RTO_MIN, DataChunk

from beach_cli.link.base import HIGH_WATER
from beach_cli.link.rtc import ice_configuration
from beach_cli.link.sctp_tuning import (
    QUICK_AFTER_IDLE,
    QUICK_START,
    RCVBUF,
    RTO_INITIAL,
    RTO_MIN,
    RTO_SLACK,
    SACK_DELAY,
    SMALL_PACKET,
    DelayedSackTransport,
    RtoTransport,
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


SdpEdit = Callable[[str, str], str]  # (the description's type, its SDP) -> the SDP sent


async def connect(edit: SdpEdit = lambda kind, sdp: sdp) -> AsyncIterator[Pair]:
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
        offer = sender.localDescription
        await receiver.setRemoteDescription(
            RTCSessionDescription(edit("offer", offer.sdp), "offer")
        )
        await receiver.setLocalDescription(await receiver.createAnswer())
        answer = receiver.localDescription
        await sender.setRemoteDescription(
            RTCSessionDescription(edit("answer", answer.sdp), "answer")
        )
        await asyncio.wait_for(opened.wait(), TIMEOUT)
        (await asyncio.wait_for(remote, TIMEOUT)).on("message", inbox.put_nowait)
        yield Pair(sender, receiver, channel, inbox)
    finally:
        await asyncio.wait_for(sender.close(), TIMEOUT)
        await asyncio.wait_for(receiver.close(), TIMEOUT)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async for p in connect():
        yield p


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
        env={k: v for k, v in os.environ.items() if not k.startswith("BEACH_SCTP")} | env,
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


def test_the_timeout_alone_can_be_stock() -> None:
    assert "installed True RtoTransport" in _python(PROBE.format(before=""))
    out = _python(PROBE.format(before=""), BEACH_SCTP_RTO="stock")
    assert f"installed True DelayedSackTransport {RCVBUF}" in out


# -- the retransmission timeout, through a relay that delays every datagram ------------------

DELAY = 0.05  # each way: a 100 ms round trip
RELAY_RCVBUF = 4 * 1024 * 1024  # the relay must lose nothing it was not told to
KEYSTROKES = 15  # odd: the last one's SACK waits for the receiver's timer (the longest hold)


def is_dtls(datagram: bytes) -> bool:
    """A DTLS record (an SCTP packet) rather than STUN (ICE's consent checks): RFC 7983's
    demultiplexing by the first byte."""
    return bool(datagram) and 20 <= datagram[0] <= 63


class Face(asyncio.DatagramProtocol):
    def __init__(self, heard: Callable[[bytes], None]) -> None:
        self.heard = heard

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.heard(data)


class Relay:
    """Stands in for each peer to the other (the SDP each is given names the relay's socket):
    what one sends leaves the other socket for its peer DELAY later. `drop` DTLS records
    from the sender are lost on purpose, and counted in `dropped`."""

    def __init__(self) -> None:
        self.real: dict[str, tuple[str, int]] = {}  # "offer": the sender's, "answer": the other
        self.faces: dict[str, asyncio.DatagramTransport] = {}  # the same keys: who it stands for
        self.drop = 0
        self.dropped = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        heard = {"offer": self._from_receiver, "answer": self._from_sender}
        for kind in ("offer", "answer"):
            face, _ = await loop.create_datagram_endpoint(
                lambda kind=kind: Face(heard[kind]),  # type: ignore[misc]
                local_addr=("0.0.0.0", 0),
            )
            face.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, RELAY_RCVBUF
            )
            self.faces[kind] = face

    def close(self) -> None:
        for face in self.faces.values():
            face.close()

    def edit(self, kind: str, sdp: str) -> str:
        """Keep one IPv4 host candidate and name the relay's socket in it."""
        lines, kept = [], False
        port = self.faces[kind].get_extra_info("sockname")[1]
        for line in sdp.split("\r\n"):
            if line.startswith("a=candidate:"):
                parts = line.split()
                if kept or ":" in parts[4]:
                    continue
                self.real[kind] = (parts[4], int(parts[5]))
                parts[5], kept = str(port), True
                line = " ".join(parts)
            elif line.startswith("m=application "):
                parts = line.split()
                parts[1] = str(port)
                line = " ".join(parts)
            lines.append(line)
        assert kept, sdp
        return "\r\n".join(lines)

    def _forward(self, data: bytes, face: str, to: str) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(DELAY, self.faces[face].sendto, data, self.real[to])

    def _from_sender(self, data: bytes) -> None:
        if self.drop and is_dtls(data):
            self.drop -= 1
            self.dropped += 1
            return
        self._forward(data, "offer", "answer")

    def _from_receiver(self, data: bytes) -> None:
        self._forward(data, "answer", "offer")


@pytest.fixture
async def linked() -> AsyncIterator[tuple[Pair, Relay]]:
    relay = Relay()
    await relay.open()
    try:
        async for p in connect(relay.edit):
            yield p, relay
    finally:
        relay.close()


def idle(sctp: Any) -> Callable[[], bool]:
    return lambda: sctp._flight_size == 0 and not sctp._sent_queue


async def keystrokes(p: Pair, count: int, pause: float = 0.0) -> None:
    """One small message at a time, each once the last one's SACK reached the sender (and
    `pause` after it arrived)."""
    for i in range(count):
        p.channel.send(b"k%d" % i)
        assert await asyncio.wait_for(p.inbox.get(), TIMEOUT) == b"k%d" % i
        await settled(p.tx, idle(p.tx))
        if pause:
            await asyncio.sleep(pause)


def expected_rto(sctp: Any) -> float:
    """RFC 6298's RTO with our slack and floor, from the association's own SRTT and RTTVAR."""
    return float(max(RTO_MIN, sctp._srtt + max(4 * sctp._rttvar, RTO_SLACK)))


async def test_after_a_warm_up_the_timeout_sits_at_the_floor(
    linked: tuple[Pair, Relay],
) -> None:
    p, _ = linked
    tx = p.tx
    assert isinstance(tx, RtoTransport) and isinstance(p.rx, RtoTransport)
    assert RTO_INITIAL < SCTP_RTO_MIN * 3  # aiortc starts at 3 s
    await keystrokes(p, 10)
    assert tx._srtt >= 2 * DELAY  # it measured the relay's round trip
    assert 4 * tx._rttvar < RTO_SLACK  # a steady link: the slack is what decides
    assert tx._rto == pytest.approx(tx._srtt + RTO_SLACK) == expected_rto(tx)
    assert tx._rto < SCTP_RTO_MIN  # where aiortc would wait 1 s


async def test_a_dropped_packet_is_resent_by_the_timer_after_the_floor(
    linked: tuple[Pair, Relay],
) -> None:
    p, relay = linked
    tx = p.tx
    await keystrokes(p, 10)
    floor = tx._rto
    assert floor < SCTP_RTO_MIN
    sent = Tally.attach(tx)
    loop = asyncio.get_running_loop()
    relay.drop = 1
    start = loop.time()
    p.channel.send(b"lost")
    assert await asyncio.wait_for(p.inbox.get(), TIMEOUT) == b"lost"
    took = loop.time() - start
    assert relay.dropped == 1
    # Nothing behind it to trigger a fast retransmit: the T3 timer resent it, once.
    assert tx.timeouts == 1 and sent.data_out == 2
    assert took >= floor  # not sooner than the timer (later: however busy this machine is)
    # Backed off, and kept so by Karn's rule: the retransmission's SACK is no sample...
    await settled(tx, idle(tx))
    assert tx._rto == pytest.approx(2 * floor)
    # ...until a packet sent once is acknowledged: back to the floor.
    await keystrokes(p, 1)
    assert tx._rto == pytest.approx(expected_rto(tx)) and tx._rto < 1.5 * floor


async def test_a_lost_packet_with_one_behind_it_is_resent_without_the_timer(
    linked: tuple[Pair, Relay],
) -> None:
    """A lost echo and the keystroke ACK sent after it: the ACK's SACK shows the gap, and with
    two packets in flight that one report is enough (RFC 5827): resent after a round trip,
    where three reports would never come and the T3 timer would decide."""
    p, relay = linked
    tx = p.tx
    await keystrokes(p, 10)
    sent = Tally.attach(tx)
    relay.drop = 1
    p.channel.send(b"lost")
    p.channel.send(b"next")
    assert await asyncio.wait_for(p.inbox.get(), TIMEOUT) == b"lost"
    assert await asyncio.wait_for(p.inbox.get(), TIMEOUT) == b"next"
    assert relay.dropped == 1
    assert sent.data_out == 3 and tx.timeouts == 0  # resent once, by the SACK, not the timer
    await settled(tx, idle(tx))


async def spend_quick_acks(p: Pair) -> None:
    payload = os.urandom(2 * 1024 * 1024)  # ~1,800 packets: QUICK_START spent
    assert await transfer(p, payload) == payload


async def trickle(p: Pair, message: bytes) -> list[str]:
    """KEYSTROKES messages, each arriving ~130 ms after the last (within SACK_DELAY: the
    receive side is never idle); what the receiver did meanwhile, "data" or "sack"."""
    held = Tally.attach(p.rx, trace=True)
    for i in range(KEYSTROKES):
        p.channel.send(message)
        assert await asyncio.wait_for(p.inbox.get(), TIMEOUT) == message, i
        await asyncio.sleep(SACK_DELAY - 2 * DELAY - 0.02)
    await settled(p.tx, idle(p.tx))
    return [kind for kind, _ in held.events]


async def test_held_sacks_cause_no_spurious_retransmission(linked: tuple[Pair, Relay]) -> None:
    """Bulk output past the quick-ack packets, then lines of output close enough that the
    receiver holds every other SACK (and the last one for its whole SACK_DELAY): nothing is
    resent."""
    p, relay = linked
    tx = p.tx
    first_tsn = tx._local_tsn
    sent = Tally.attach(tx)
    await spend_quick_acks(p)
    kinds = await trickle(p, os.urandom(2 * SMALL_PACKET))
    assert kinds.count("data") == KEYSTROKES
    assert kinds.count("sack") <= KEYSTROKES // 2 + 1  # held: one SACK per two packets
    assert relay.dropped == 0
    assert tx.timeouts == 0
    assert sent.data_out == (tx._local_tsn - first_tsn) % 2**32  # each TSN sent once


async def test_keystrokes_amid_traffic_are_acknowledged_at_once(
    linked: tuple[Pair, Relay],
) -> None:
    """Small packets get a SACK each even when the receive side is busy, so what the sender
    measures is the round trip alone and its timeout stays at the floor."""
    p, _ = linked
    await spend_quick_acks(p)
    assert alternate(await trickle(p, b"k"), KEYSTROKES)
    tx = p.tx
    await keystrokes(p, 10)  # SRTT and RTTVAR settle on the keystrokes' round trips
    assert tx._rto == pytest.approx(tx._srtt + RTO_SLACK) == expected_rto(tx)
