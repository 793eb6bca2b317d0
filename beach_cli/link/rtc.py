"""aiortc wrapper: one RTCPeerConnection and one ordered, reliable data channel per joiner,
with explicit ICE servers, a connect timeout, backpressure and an application heartbeat.

Importing this module loads aiortc (and PyAV, ~0.3 s): import it lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from ..errors import ProtocolError
from ..wire.frames import Frame
from . import sctp_tuning
from .base import Link

log = logging.getLogger("beach.rtc")
sctp_tuning.install()  # before any RTCPeerConnection: bigger socket buffers, delayed SACKs

CHANNEL_LABEL = "beach"
# A peer's mDNS (`<uuid>.local`) candidates: at most this many resolving at once, each for at
# most this long.
MDNS_PENDING = 4
MDNS_WAIT = 2.0


def ice_configuration(servers: list[dict[str, Any]]) -> RTCConfiguration:
    """Always explicit: RTCConfiguration() with no servers silently adds a public STUN server,
    and offline that stalls gathering for 5 s per side."""
    ice = []
    for s in servers:
        urls = s.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or not urls:
            continue
        ice.append(
            RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential"))
        )
    return RTCConfiguration(iceServers=ice)


def _path_kind(pc: RTCPeerConnection) -> str:
    """ "peer-to-peer" or "TURN relay", from the nominated ICE candidate pair (aioice internals,
    read defensively: unknown means peer-to-peer)."""
    with contextlib.suppress(Exception):
        sctp = pc.sctp
        if sctp is None:  # not connected yet
            return "peer-to-peer"
        ice = sctp.transport.transport  # RTCSctpTransport -> RTCDtlsTransport -> ICE
        pair = ice._connection._nominated.get(1)
        if pair is not None and "relay" in (pair.local_candidate.type, pair.remote_candidate.type):
            return "TURN relay"
    return "peer-to-peer"


class PeerLink(Link):
    """A data channel to one peer. Frames in via `on_frame`; frames out via `send`."""

    def __init__(
        self,
        ice_servers: list[dict[str, Any]],
        on_frame: Callable[[Frame, bytes], None],
        name: str = "peer",
    ) -> None:
        super().__init__(on_frame, name)
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.channel: Any = None
        self._closing: asyncio.Future[None] | None = None
        self._resolving: set[asyncio.Future[None]] = set()  # mDNS candidates being added

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            state = self.pc.connectionState
            log.debug("%s: connection %s", self.name, state)
            if state in ("failed", "closed"):
                self.mark_lost(f"connection {state}")

        @self.pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            if channel.label == CHANNEL_LABEL and self.channel is None:
                self._attach(channel)

    # -- handshake -------------------------------------------------------------------------------

    async def make_offer(self) -> str:
        self._attach(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_offer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def add_candidate(self, msg: dict[str, Any]) -> None:
        """Apply a trickled candidate (browsers trickle; aiortc puts its own in the SDP)."""
        text = msg.get("candidate") or ""
        if not text:
            return  # end-of-candidates
        try:
            cand = candidate_from_sdp(text.removeprefix("candidate:"))
        except (ValueError, IndexError) as exc:
            raise ProtocolError("malformed ICE candidate") from exc
        cand.sdpMid = msg.get("sdpMid")
        cand.sdpMLineIndex = msg.get("sdpMLineIndex")
        if not cand.ip.endswith(".local"):
            await self.pc.addIceCandidate(cand)
            return
        # A browser hides its addresses behind mDNS names. Resolving one takes up to aioice's
        # 1 s multicast wait and mostly fails, while the browser's checks reach us anyway (as
        # peer-reflexive candidates): never hold the next message for it, and keep a few.
        if len(self._resolving) >= MDNS_PENDING:
            log.debug("%s: mDNS candidate %s ignored (too many)", self.name, cand.ip)
            return
        task = asyncio.ensure_future(asyncio.wait_for(self.pc.addIceCandidate(cand), MDNS_WAIT))
        self._resolving.add(task)
        task.add_done_callback(self._resolved)

    def _resolved(self, task: asyncio.Future[None]) -> None:
        self._resolving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s: mDNS candidate not added: %r", self.name, task.exception())

    @property
    def path(self) -> str:  # type: ignore[override]
        return _path_kind(self.pc)

    # -- channel ---------------------------------------------------------------------------------

    def _attach(self, channel: Any) -> None:
        self.channel = channel
        channel.bufferedAmountLowThreshold = self._low_water
        channel.on("open", self._opened)
        channel.on("close", lambda: self.mark_lost("channel closed"))
        channel.on("bufferedamountlow", self._drained)
        channel.on("message", self._received)
        if channel.readyState == "open":
            self._opened()

    def _transmit(self, frame: bytes) -> None:
        self.channel.send(frame)

    def _set_low_water(self, nbytes: int) -> None:
        if self.channel is not None:
            self.channel.bufferedAmountLowThreshold = nbytes

    @property
    def usable(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open"

    @property
    def buffered(self) -> int:
        return self.channel.bufferedAmount if self.channel is not None else 0

    # Progress is the peer's acknowledgements. bufferedAmount counts only what SCTP has not
    # taken yet, and SCTP keeps taking small frames (sent, never acknowledged) until its window
    # is full. aiortc internals, read defensively.

    def _progress(self) -> object:
        tsn = getattr(self.pc.sctp, "_last_sacked_tsn", None)
        return super()._progress() if tsn is None else tsn

    def _outstanding(self) -> bool:
        sctp = self.pc.sctp
        return (
            self.buffered > 0
            or getattr(sctp, "_flight_size", 0) > 0
            or bool(getattr(sctp, "_outbound_queue", None))
        )

    async def _shutdown(self) -> None:
        for task in list(self._resolving):
            task.cancel()
        # Never cancel pc.close() itself: a cancelled close leaves aiortc's own shutdown task
        # failing with InvalidStateError. Shield it and stop waiting after a bound instead.
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.pc.close())
            self._closing.add_done_callback(lambda f: f.cancelled() or f.exception())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._closing), 2.0)
        if self._closing.done():
            self._release()

    def _release(self) -> None:
        """Drop what a closed association still holds for the peer. aiortc's objects are
        reference cycles that only the cycle collector frees, so whatever the peer never took
        stayed resident for as long as that took (measured: hundreds of MiB after a flood)."""
        sctp = self.pc.sctp
        for name in ("_data_channel_queue", "_outbound_queue", "_sent_queue"):
            queue = getattr(sctp, name, None)
            if queue is not None and hasattr(queue, "clear"):
                queue.clear()
