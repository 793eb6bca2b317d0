"""The joiner's way to the host: the server introduces us, SPAKE2 proves the token, and the
sealed offer/answer sets up the WebRTC data channel (or, failing that, the server relay). Used
for the first connection and for every reconnect; the steps are in handshake.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import BeachError, ServerUnreachable
from ..keys import Token
from ..link.base import Link
from ..link.handover import HandoverLink
from ..link.relay import RelayLink
from ..rendezvous import SignalingClient
from ..wire.frames import Frame
from .handshake import Handshake, Prover
from .refusals import rejected, server_error


class Dialer:
    """Dials the host once per `dial()`; `status` narrates the steps for the person waiting."""

    def __init__(
        self,
        server: str,
        token: Token,
        ice_servers: list[str],
        timeout: float,
        rtc: Awaitable[Any],
        on_frame: Callable[[Frame, bytes], None],
        prover: Prover | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.token = token
        self.ice_servers = ice_servers
        self.timeout = timeout
        self._rtc = rtc
        self._on_frame = on_frame
        self._prover = prover
        self._on_settled = on_settled
        self.marks: dict[str, float] = {}

    async def dial(
        self, status: Callable[[str], None], resume: str | None, timeout: float | None = None
    ) -> Link:
        """A connected link (peer-to-peer, or relayed through the server when no direct or
        TURN path opens), or a BeachError saying why not. `timeout` is each step's wait (see
        handshake.py) instead of the configured connect timeout."""
        sig = SignalingClient(self.server)
        handshake = Handshake(
            sig,
            self.token,
            timeout or self.timeout,
            status=status,
            resume=resume,
            rtc=self._rtc,
            ice_servers=self.ice_servers,
            on_frame=self._on_frame,
            marks=self.marks,
            prover=self._prover,
            on_settled=self._on_settled,
        )
        relayed = False
        try:
            link = await handshake.run()
            relayed = isinstance(link, RelayLink | HandoverLink)
            return link
        except ServerUnreachable:
            if handshake.step == "server":
                raise
            # The server may have hung up right after telling us why (a refusal).
            reason = await self._last_words(sig)
            if reason is not None:
                raise reason from None
            raise
        finally:
            # Once a peer-to-peer channel is open the session needs no server: hang up. A
            # relayed session keeps the connection; its link closes it (an early-relay one once
            # both directions have moved to the data channel).
            if not relayed:
                await sig.close()

    async def _last_words(self, sig: SignalingClient) -> BeachError | None:
        with contextlib.suppress(BeachError, TimeoutError):
            while True:
                msg = await sig.recv(0.5)
                if msg["type"] == "error":
                    return server_error(msg)
                if msg["type"] == "signal" and msg["data"].get("k") == "reject":
                    return rejected(str(msg["data"].get("reason")))
        return None
