"""Three fixes to aiortc's data channel, installed once before any RTCPeerConnection exists
(rtc.py calls `install()` on import):

1. Receive buffers sized for bursts. aioice asks for 256 KiB on its UDP sockets, and a burst of
   output overflows that (about 1,000 datagrams lost per 20 MiB on loopback, each recovered by
   SCTP retransmission after a 1 s minimum timeout). We ask for RCVBUF instead; the kernel
   grants at most `net.core.rmem_max` (docs/operations.md says what to set).
2. Delayed SACKs (RFC 9260 §6.2). Stock aiortc acknowledges every DATA packet at once: one
   SACK to seal, send, open and process for every packet. `DelayedSackTransport` acknowledges
   every second packet, or SACK_DELAY after an unacknowledged one, and at once on a gap, a
   duplicate, a filled gap, a small packet, and for the first packets after the receive side
   was idle (a keystroke's echo is acknowledged as promptly as before, and slow start is not
   slowed).
3. A retransmission timeout that fits the link. aiortc never waits less than 1 s (and 3 s
   before its first measurement) to resend a lost packet, and never backs off; a keystroke or
   its echo has nothing behind it to trigger a fast retransmit, so on a lossy link one in a
   hundred waited over a second. `RtoTransport` computes RFC 6298's RTO with a floor just
   above what a peer's delayed SACK can add, and backs off as RFC 9260 §6.3.3 says; and
   with fewer than four packets in flight, it resends a packet that a later one's SACK shows
   missing at once (RFC 5827's early retransmit) instead of waiting for three such SACKs.

The last two override private methods, so they are installed only on the aiortc minor version
they were tested with, and only if what they rely on is there; otherwise aiortc stays stock.
`BEACH_SCTP_TUNING=off` turns all three off (for an A/B comparison, or if one ever misbehaves);
`BEACH_SCTP_RTO=stock` keeps aiortc's own timeout and fast retransmit (an A/B of the third).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import aioice.turn
import aiortc
import aiortc.rtcpeerconnection
from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport, SackChunk, uint32_gt

log = logging.getLogger("beach.sctp")

ENV = "BEACH_SCTP_TUNING"
RTO_ENV = "BEACH_SCTP_RTO"  # "stock": aiortc's own retransmission timeout, the rest tuned
TESTED_AIORTC = "1.16."  # the minor version whose private methods we override
# 4 MiB holds ~3,500 full datagrams: a 64 KiB message is 57, and HIGH_WATER (1 MiB) of output
# in flight is ~900. (Linux reports, and charges, twice what is asked: its bookkeeping.)
RCVBUF = 4 * 1024 * 1024
# RFC 9260's ceiling (and usrsctp's default). It only ever delays the acknowledgement of the
# last odd packet of a burst: pairs go at once, and the packets after an idle spell too.
SACK_DELAY = 0.2
# aiortc's sender grows its window in slow start by at most one packet per SACK, so SACKing
# every second packet would grow it 1.5x per round trip instead of 2x (measured: 2 MB over a
# 150 ms round trip, no rate limit, took 1.2-1.3x as long). So packets are acknowledged one by
# one (as in TCP's quick-ack mode) for the first QUICK_START of an association: slow start
# ends at the peer's advertised window (aiortc: 1 MiB, ~900 packets) and from there the window
# grows by bytes acknowledged, which delayed SACKs do not slow. After an idle spell the window
# is as it was, unless the sender timed out (its window is then one packet, and its slow start
# ends at half what it was): QUICK_AFTER_IDLE packets take it to ~150 KB, past the
# bandwidth-delay product of 20 Mbit/s at 40 ms (100 KB).
QUICK_START = 1024
QUICK_AFTER_IDLE = 128
# A packet shorter than this (a keystroke, its echo, a prompt) is acknowledged at once too, even
# amid other packets: its sender likely has nothing behind it, and a SACK held for it would
# only add to the round trips that sender measures. Typing faster than one key per SACK_DELAY
# would otherwise hold every other keystroke's SACK until the next key, and grow the typist's
# retransmission timeout by half that wait. Bulk output fills its packets (aiortc sends one
# chunk a packet: 1,188 bytes, a 64 KiB message's last fragment 604); its SACKs stay delayed.
SMALL_PACKET = 300  # bytes of SCTP packet: ~270 of a message
# The retransmission timeout, RFC 6298 §2 with its "G" term: RTO = SRTT + max(4 RTTVAR,
# RTO_SLACK), within [RTO_MIN, RTO_MAX]. A peer may hold its SACK of a packet for up to 200 ms
# (ours: SACK_DELAY; usrsctp's default, Firefox; dcsctp's, Chrome: the lesser of 200 ms and
# half its RTO), so the acknowledgement of a packet can take SRTT + 200 ms even on a steady
# link where RTTVAR has decayed to nothing: the slack is that plus 50 ms for a busy peer's
# late timer, so a held SACK never looks like a loss. aiortc's floor is RFC 9260's RTO.Min,
# 1 s; dcsctp (Chrome) floors at 400 ms with ~110 ms of variance slack, libdatachannel at
# 200 ms, Linux's TCP at SRTT + 200 ms. Ours resends after ~RTT + 250 ms: 0.4 s at 150 ms.
RTO_SLACK = 0.25
RTO_MIN = RTO_SLACK  # only binds where SRTT is near zero (loopback, a LAN)
# RFC 9260's RTO.Max for a measured RTO (a link that bufferbloat slows to seconds is not
# mistaken for loss). Backing off after a timeout stops doubling at BACKOFF_MAX, as Chrome's
# data channel does (3 s): after an outage of a minute the first retransmission to get
# through comes within 3 s of the link's return, not up to a minute later. A packet every 3 s
# into a dead link costs nothing; beach's own PINGs decide when a peer is gone.
RTO_MAX = 60.0
BACKOFF_MAX = 3.0
# Before the first measurement (the INIT, the COOKIE ECHO, the channel's opening): RFC 9260's
# RTO.Initial, 1 s, where aiortc has RFC 4960's 3 s.
RTO_INITIAL = 1.0
# Fast retransmit waits for a packet to be reported missing by three SACKs (aiortc counts
# "misses" to 3); with fewer than EARLY_RETRANSMIT packets in flight and nothing more to send
# there will never be three, and the timer decides. RFC 5827 lowers the count to the packets in
# flight minus one: a lost echo with the keystroke ACK that follows it 50 ms later is resent a
# round trip after it, not an RTO.
EARLY_RETRANSMIT = 4
MISSES = 3  # aiortc's fast-retransmit threshold (rtcsctptransport: `_misses == 3`)
# What the stock transport relies on, checked before our subclass replaces it.
_METHODS = (
    "_handle_data",
    "_send_sack",
    "_send_chunk",
    "_receive_chunk",
    "_update_rto",
    "_t3_expired",
    "_t1_expired",
    "_receive_sack_chunk",
)
_STATE = (
    "_sack_needed",
    "_sack_misordered",
    "_sack_duplicates",
    "_association_state",
    "_rto",
    "_srtt",
    "_rttvar",
    "_t3_handle",
    "_sent_queue",
    "_outbound_queue",
    "_data_channel_queue",
)

DATA_CHUNK_TYPE = 0  # RFC 9260 §3.2

_installed: bool | None = None  # None: not tried yet; else whether our transport is in


class DelayedSackTransport(RTCSctpTransport):
    """RTCSctpTransport whose SACKs follow RFC 9260 §6.2 instead of one per packet.

    aiortc's `_handle_data` calls `_send_sack` once after each packet that carried DATA (or a
    FORWARD TSN); we decide here whether that packet's acknowledgement goes now or waits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sack_held = 0  # packets received since the last SACK
        self._sack_gap = False  # the last SACK reported a gap (so its filling is news)
        self._sack_timer: asyncio.TimerHandle | None = None
        self._sack_task: asyncio.Future[None] | None = None
        self._data_heard = float("-inf")  # loop time of the last packet with DATA
        self._sack_quick = QUICK_START  # packets still to acknowledge one by one
        self._small = False  # the packet being handled is shorter than SMALL_PACKET

    async def _handle_data(self, data: bytes) -> None:
        self._small = len(data) < SMALL_PACKET
        await super()._handle_data(data)

    async def _send_sack(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._data_heard >= SACK_DELAY:
            # After an idle spell: a keystroke, a burst starting, or a retransmission after a
            # timeout. See QUICK_AFTER_IDLE.
            self._sack_quick = max(self._sack_quick, QUICK_AFTER_IDLE)
        self._data_heard = now
        self._sack_held += 1
        quick = self._sack_quick > 0
        self._sack_quick -= quick
        if (
            quick
            or self._small
            or self._sack_held >= 2
            or self._sack_misordered  # a gap: the sender needs it for fast retransmit
            or self._sack_gap  # the gap this packet filled
            or self._sack_duplicates  # the sender retransmits needlessly: tell it now
        ):
            await self._sack_now()
            return
        # Held: `_sack_needed` is cleared so a later packet without DATA (say, a SACK of our
        # own data) does not count as one; the timer remembers that we owe one.
        self._sack_needed = False
        if self._sack_timer is None:
            self._sack_timer = loop.call_later(SACK_DELAY, self._sack_due)

    # aiortc's send path (SCTP, DTLS, aioice, sendto) never suspends: a SACK sent from the timer
    # cannot interleave with a packet being handled.
    async def _sack_now(self) -> None:
        if self._sack_timer is not None:
            self._sack_timer.cancel()
            self._sack_timer = None
        self._sack_held = 0
        self._sack_gap = bool(self._sack_misordered)
        await super()._send_sack()

    def _sack_due(self) -> None:
        self._sack_timer = None
        if self._sack_held and self._association_state != self.State.CLOSED:
            self._sack_task = asyncio.ensure_future(self._sack_late())

    async def _sack_late(self) -> None:
        with contextlib.suppress(ConnectionError):  # the DTLS transport closed meanwhile
            await self._sack_now()


class RtoTransport(DelayedSackTransport):
    """DelayedSackTransport whose retransmission timeout follows RFC 6298 with the floor and
    ceiling above. aiortc keeps Karn's rule (it samples only chunks sent once) and computes
    SRTT and RTTVAR as RFC 9260 §6.3.1 says; we change what RTO is made of them, and back the
    timer off on expiry, which aiortc does not do. A new sample recomputes RTO from SRTT and
    RTTVAR, which ends any backoff (RFC 6298 §5.7)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rto = RTO_INITIAL
        self.timeouts = 0  # T3-rtx expiries (for the tests and the benchmark)

    def _update_rto(self, R: float) -> None:
        super()._update_rto(R)  # SRTT and RTTVAR (and a 1 s floor that we replace)
        assert self._srtt is not None and self._rttvar is not None
        rto = self._srtt + max(4 * self._rttvar, RTO_SLACK)
        self._rto = max(RTO_MIN, min(rto, RTO_MAX))

    def _back_off(self) -> None:
        # Double RTO, up to BACKOFF_MAX (never below what was measured).
        self._rto = max(self._rto, min(2 * self._rto, BACKOFF_MAX))

    def _t3_expired(self) -> None:
        # RFC 9260 §6.3.3 E2; the T3 restarted by the retransmission waits the doubled time.
        self.timeouts += 1
        self._back_off()
        super()._t3_expired()

    async def _receive_sack_chunk(self, chunk: SackChunk) -> None:
        if chunk.gaps and not self._outbound_queue and not self._data_channel_queue:
            self._early_retransmit(chunk)
        await super()._receive_sack_chunk(chunk)

    def _early_retransmit(self, sack: SackChunk) -> None:
        """RFC 5827 §3.2: count this SACK's report of a missing packet as if it were the
        third when few are in flight. aiortc strikes each chunk missing below the highest one
        this SACK newly acknowledges and resends it at the third strike: we only start the
        count nearer to it."""
        cumulative = sack.cumulative_tsn
        flight = [c for c in self._sent_queue if uint32_gt(c.tsn, cumulative)]
        if not flight or len(flight) >= EARLY_RETRANSMIT:
            return
        head = MISSES - max(len(flight) - 1, 1)  # strikes that count as already made
        for c in flight:
            if not c._acked and not c._retransmit:
                c._misses = max(c._misses, head)

    def _t1_expired(self) -> None:
        # RFC 9260 §5.1 C: the INIT or COOKIE ECHO is resent after a doubled RTO too (1, 2,
        # then 3 s: the association gives up after 24 s, where aiortc's fixed 3 s took 27).
        self._back_off()
        super()._t1_expired()


def _sack_transport_fits() -> str | None:
    """Why our subclass must not be installed on this aiortc, or None if it may."""
    if not aiortc.__version__.startswith(TESTED_AIORTC):
        return f"aiortc {aiortc.__version__} is not the tested {TESTED_AIORTC}x"
    missing = [m for m in _METHODS if not callable(getattr(RTCSctpTransport, m, None))]
    # Instance attributes exist only once constructed: look for their names in __init__.
    assigned = RTCSctpTransport.__init__.__code__.co_names
    missing += [a for a in _STATE if a not in assigned]
    if getattr(aiortc.rtcpeerconnection, "RTCSctpTransport", None) is not RTCSctpTransport:
        missing.append("rtcpeerconnection.RTCSctpTransport")
    return f"aiortc {aiortc.__version__} lacks {', '.join(missing)}" if missing else None


def granted_rcvbuf(asked: int = RCVBUF) -> int:
    """What the kernel grants a UDP socket asking for `asked` (as SO_RCVBUF reads it back:
    twice the request, capped at twice net.core.rmem_max)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, asked)
        return probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def install() -> bool:
    """Apply the tunings unless BEACH_SCTP_TUNING=off; True if our transport is in. Only the
    first call acts (a connection already made keeps the transport it was made with)."""
    global _installed
    if _installed is not None:
        return _installed
    _installed = False
    if os.environ.get(ENV, "").lower() == "off":
        log.debug("SCTP tuning off (%s=off): stock aiortc", ENV)
        return False
    # aioice reads this module constant whenever it opens a socket (host candidates and TURN).
    if isinstance(getattr(aioice.turn, "UDP_SOCKET_BUFFER_SIZE", None), int):
        aioice.turn.UDP_SOCKET_BUFFER_SIZE = RCVBUF
        granted = granted_rcvbuf()
        log.debug(
            "UDP receive buffer: asked %d, kernel grants %d%s",
            RCVBUF,
            granted,
            "" if granted >= 2 * RCVBUF else " (raise net.core.rmem_max for more)",
        )
    else:
        log.debug(
            "UDP receive buffer left as aioice sets it: no aioice.turn.UDP_SOCKET_BUFFER_SIZE"
        )
    why_not = _sack_transport_fits()
    if why_not is not None:
        log.debug("delayed SACKs not installed, stock aiortc SACKs: %s", why_not)
        return False
    stock_rto = os.environ.get(RTO_ENV, "").lower() == "stock"
    if stock_rto:
        log.debug("aiortc's own retransmission timeout (%s=stock)", RTO_ENV)
    transport = DelayedSackTransport if stock_rto else RtoTransport
    aiortc.rtcpeerconnection.RTCSctpTransport = transport  # type: ignore[misc]
    _installed = True
    return True


def socket_buffers(pc: Any) -> list[int]:
    """SO_RCVBUF of every UDP socket a connected RTCPeerConnection's ICE gathered (aioice
    internals, read defensively: [] when not connected or when they moved)."""
    sizes = []
    with contextlib.suppress(AttributeError):
        for protocol in pc.sctp.transport.transport._connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return sizes


def _first_data_tsn(packet: bytes) -> int | None:
    """The TSN of a packet's first DATA chunk, from the chunk headers alone (parsing the packet
    into chunk objects a second time would cost the receiver a third more CPU)."""
    pos = 12  # the common header
    while pos + 8 <= len(packet):
        length = int.from_bytes(packet[pos + 2 : pos + 4], "big")
        if packet[pos] == DATA_CHUNK_TYPE:
            return int.from_bytes(packet[pos + 4 : pos + 8], "big")
        if length < 4:
            return None
        pos += (length + 3) & ~3
    return None


@dataclass
class Tally:
    """Counts one SCTP transport's packets, for the tests and the benchmark: it wraps the
    instance's receive and send methods and changes nothing they do."""

    data_in: int = 0  # packets received that carried DATA
    sacks_out: int = 0
    data_out: int = 0  # DATA chunks sent, retransmissions included
    events: list[tuple[str, int]] = field(default_factory=list)  # kept only if `trace`

    @classmethod
    def attach(cls, sctp: RTCSctpTransport, trace: bool = False) -> Tally:
        tally = cls()
        handle, send = sctp._handle_data, sctp._send_chunk

        async def handle_data(data: bytes) -> None:
            tsn = _first_data_tsn(data)
            if tsn is not None:
                tally.data_in += 1
                if trace:
                    tally.events.append(("data", tsn))
            await handle(data)

        async def send_chunk(chunk: Any) -> None:
            if isinstance(chunk, SackChunk):
                tally.sacks_out += 1
                if trace:
                    tally.events.append(("sack", len(chunk.gaps)))
            elif isinstance(chunk, DataChunk):
                tally.data_out += 1
            await send(chunk)

        sctp._handle_data = handle_data  # type: ignore[method-assign]
        sctp._send_chunk = send_chunk  # type: ignore[method-assign]
        return tally
