"""aiortc wrapper: one RTCPeerConnection and one ordered, reliable data channel per joiner,
with explicit ICE servers, a connect timeout, backpressure and an application heartbeat.

Importing this module loads aiortc (and PyAV, ~0.3 s): import it lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .errors import ConnectTimeout, ProtocolError
from .protocol import Frame, decode_frame, encode_frame

log = logging.getLogger("beach.rtc")

CHANNEL_LABEL = "beach"
PING_INTERVAL = 1.0
# Any frame counts as a sign of life; silence this long means the peer is gone.
PEER_TIMEOUT = 4.0
# Backpressure: stop queueing into SCTP above HIGH, resume when it drains below LOW.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024


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
    """'direct' or 'TURN relay', from the selected ICE candidate pair."""
    with contextlib.suppress(Exception):
        for transceiver in [pc.sctp] if pc.sctp else []:
            ice = transceiver.transport.transport  # RTCDtlsTransport -> RTCIceTransport
            pair = ice._connection._nominated.get(1)  # aioice internals: best effort only
            if pair is not None and pair.local_candidate.type == "relay":
                return "TURN relay"
    return "peer-to-peer"


class PeerLink:
    """A data channel to one peer. Frames in via `on_frame`; frames out via `send`."""

    def __init__(
        self,
        ice_servers: list[dict[str, Any]],
        on_frame: Callable[[Frame, bytes], None],
        name: str = "peer",
    ) -> None:
        self.name = name
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.channel: Any = None
        self._on_frame = on_frame
        self._open = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._last_heard = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None
        self.rtt: float | None = None
        self._closing: asyncio.Future[None] | None = None

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            state = self.pc.connectionState
            log.debug("%s: connection %s", self.name, state)
            if state in ("failed", "closed"):
                self._mark_lost(f"connection {state}")

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
        await self.pc.addIceCandidate(cand)

    async def wait_open(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._open.wait(), timeout)
        except TimeoutError as exc:
            raise ConnectTimeout(
                f"no peer-to-peer connection within {timeout:.0f} s "
                "(no usable network path between the two machines?)"
            ) from exc
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    @property
    def path(self) -> str:
        return _path_kind(self.pc)

    # -- channel ---------------------------------------------------------------------------------

    def _attach(self, channel: Any) -> None:
        self.channel = channel
        channel.bufferedAmountLowThreshold = LOW_WATER

        @channel.on("open")
        def _opened() -> None:
            self._last_heard = time.monotonic()
            self._open.set()

        @channel.on("close")
        def _closed() -> None:
            self._mark_lost("channel closed")

        @channel.on("bufferedamountlow")
        def _low() -> None:
            self._writable.set()

        @channel.on("message")
        def _message(data: bytes | str) -> None:
            self._last_heard = time.monotonic()
            try:
                kind, body = decode_frame(data)
            except ProtocolError as exc:
                log.warning("%s: dropping bad frame: %s", self.name, exc)
                return
            if kind == Frame.PING:
                self.send(encode_frame(Frame.PONG, body))
            elif kind == Frame.PONG:
                if len(body) == 8:
                    self.rtt = time.monotonic() - int.from_bytes(body, "big") / 1e9
            else:
                self._on_frame(kind, body)

        if channel.readyState == "open":
            self._open.set()

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False if the channel is not usable. Never blocks."""
        ch = self.channel
        if ch is None or ch.readyState != "open" or self.lost.is_set():
            return False
        try:
            ch.send(frame)
        except Exception as exc:  # aiortc raises various errors on a dying transport
            self._mark_lost(f"send failed: {exc}")
            return False
        if ch.bufferedAmount > HIGH_WATER:
            self._writable.clear()
        return True

    @property
    def buffered(self) -> int:
        return self.channel.bufferedAmount if self.channel is not None else 0

    async def writable(self) -> None:
        """Wait until the channel has drained below the low-water mark (or is lost)."""
        if self.buffered > HIGH_WATER and not self.lost.is_set():
            self._writable.clear()
            await self._writable.wait()

    # -- liveness --------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while not self.lost.is_set():
            self.send(encode_frame(Frame.PING, time.monotonic_ns().to_bytes(8, "big")))
            try:
                await asyncio.wait_for(self.lost.wait(), PING_INTERVAL)
                return
            except TimeoutError:
                pass
            if time.monotonic() - self._last_heard > PEER_TIMEOUT:
                self._mark_lost(f"no sign of life for {PEER_TIMEOUT:.0f} s")

    def _mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            log.debug("%s: lost (%s)", self.name, reason)
            self.lost.set()
            self._writable.set()

    async def close(self) -> None:
        self._mark_lost("closed")
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        # Never cancel pc.close() itself: a cancelled close leaves aiortc's own shutdown task
        # failing with InvalidStateError. Shield it and stop waiting after a bound instead.
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.pc.close())
            self._closing.add_done_callback(lambda f: f.cancelled() or f.exception())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._closing), 2.0)
