"""The joiner's way to the host: the server introduces us, SPAKE2 proves the token, and the
sealed offer/answer sets up the WebRTC data channel. Used for the first connection and for
every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import tasks
from ..errors import (
    BeachError,
    ConnectTimeout,
    HostAway,
    HostGone,
    ProtocolError,
    RateLimited,
    Refused,
    SecurityError,
    ServerUnreachable,
    UnknownSession,
    WrongToken,
)
from ..keys import KeyExchange, Token
from ..link import reach
from ..link.ice import merge
from ..link.relay import RelayLink
from ..rendezvous import SignalingClient
from ..text import printable
from ..wire.frames import Frame
from ..wire.keyplane import (
    HOLD_MAX,
    R_PROTOCOL,
    R_SECURITY,
    R_TIMEOUT,
    R_WRONG_TOKEN,
    REJECT_REASONS,
    parse_payload,
    payload,
)
from ..wire.signaling import E_HOST_AWAY, E_RATE_LIMITED, E_TOO_MANY, E_UNKNOWN_SESSION

APPROVAL_WAIT = 130.0  # the host answers within 120 s or the answer is no
# How long a direct or TURN path may take to open before frames go through the server.
P2P_WAIT = 10.0
# ...and when the candidates show no direct path could open (say this network lets no UDP out):
# still long enough for a routed private network, which the candidates cannot reveal.
P2P_WAIT_UNLIKELY = 3.0

log = logging.getLogger("beach.dial")


def _kinds(cands: list[reach.Candidate]) -> str:
    return ", ".join(sorted({c.kind for c in cands})) or "none"


def server_error(msg: dict[str, Any]) -> BeachError:
    # The server's words, never its control characters (an OSC 52 would set our clipboard).
    code, text = msg["code"], printable(str(msg["message"]), 200)
    if code == E_UNKNOWN_SESSION:
        return UnknownSession(f"{text} (check the token, or the session has ended)")
    if code == E_HOST_AWAY:
        return HostAway(text)
    if code == E_RATE_LIMITED:
        return RateLimited(text)
    if code in (E_TOO_MANY, "dropped"):
        return Refused(text)
    return BeachError(f"the server said: {text}")


def rejected(reason: str) -> BeachError:
    """A `reject` travels unsealed (anyone on the path can forge one): show only the meaning
    we know for its code, never its text."""
    meaning = REJECT_REASONS.get(reason)
    if meaning is None:
        return Refused(
            "the host refused this join attempt (for a reason this version does not know)"
        )
    if reason == R_WRONG_TOKEN:
        return WrongToken(meaning)
    if reason in (R_SECURITY, R_PROTOCOL):
        return SecurityError(meaning)
    if reason == R_TIMEOUT:
        return ConnectTimeout(meaning)
    return Refused(meaning)


# The handshake's steps, in the only order an honest server delivers them; each names what
# did not arrive if its wait runs out.
_LATE = {
    "pake": "the host did not answer within {t:.0f} s (its key exchange message never came)",
    "confirm": "the host's key confirmation did not arrive within {t:.0f} s",
    "offer": (
        "the host's offer did not arrive within {t:.0f} s after the key was confirmed "
        "(is the server passing messages on?)"
    ),
    "approval": "the host did not let you in within {t:.0f} s",
    "open": (
        "no connection to the host within {t:.0f} s "
        "(no usable network path between the two machines?)"
    ),
}
_REORDERED = (
    "the server delivered the host's key exchange out of order ({what}); an honest server "
    "never does: not connecting"
)


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
    ) -> None:
        self.server = server
        self.token = token
        self.ice_servers = ice_servers
        self.timeout = timeout
        self._rtc = rtc
        self._on_frame = on_frame
        self.marks: dict[str, float] = {}
        self._step = timeout

    async def dial(
        self, status: Callable[[str], None], resume: str | None, timeout: float | None = None
    ) -> Any:
        """A connected link (peer-to-peer, or relayed through the server when no direct or
        TURN path opens), or a BeachError saying why not. `timeout` bounds each step (the
        server, the handshake) instead of the configured connect timeout."""
        sig = SignalingClient(self.server)
        link = None
        self._step = timeout or self.timeout
        relayed = False
        try:
            await sig.connect(self._step)
            self.marks["server"] = time.monotonic()
            status("waiting for the host")
            try:
                link = await self._handshake(sig, status, resume)
                relayed = isinstance(link, RelayLink)
            except ServerUnreachable:
                # The server may have hung up right after telling us why (a refusal).
                reason = await self._last_words(sig)
                if reason is not None:
                    raise reason from None
                raise
            return link
        except BaseException:
            if link is not None:
                await link.close()
            raise
        finally:
            # Once a peer-to-peer channel is open the session needs no server: hang up. A
            # relayed session keeps the connection; its link closes it.
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

    async def _handshake(
        self, sig: SignalingClient, status: Callable[[str], None], resume: str | None
    ) -> Any:
        t = self.token
        await sig.send("join", session=t.session)
        msg = await sig.recv(self._step)
        if msg["type"] == "error":
            raise server_error(msg)
        if msg["type"] != "joined":
            raise ProtocolError(f"unexpected answer from the server: {msg['type']}")
        offered = msg.get("ice_servers", sig.ice_servers)  # fresh TURN credentials, if any
        kx = KeyExchange("joiner", t.session, msg["peer"], t.role, t.secret)
        await sig.send("signal", to="host", data=await asyncio.to_thread(kx.start))
        step = "pake"  # what we wait for next (see _LATE)
        early: dict[str, Any] | None = None  # a confirmation that overtook the host's pake
        deadline = time.monotonic() + self._step
        wait_for = self._step
        link: Any = None
        opened: asyncio.Future[None] | None = None
        try:
            while opened is None or not opened.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if early is not None:
                        raise SecurityError(_REORDERED.format(what="a confirmation, no key"))
                    raise ConnectTimeout(_LATE[step].format(t=wait_for))
                recv = asyncio.ensure_future(sig.recv(remaining))
                waiters: set[asyncio.Future[Any]] = {recv} | ({opened} if opened else set())
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                try:
                    msg = recv.result()
                except TimeoutError:
                    continue
                if msg["type"] == "host_left":
                    raise HostGone("the host left before we could connect")
                if msg["type"] == "error":
                    raise server_error(msg)
                if msg["type"] != "signal":
                    continue
                data = parse_payload(msg["data"])
                kind = data["k"]
                if kind == "reject":
                    raise rejected(data["reason"])
                if kind == "hold":  # the host slows attempts after wrong tokens
                    if step != "pake":
                        raise SecurityError(_REORDERED.format(what="a hold after the key"))
                    held = min(data["s"], HOLD_MAX)
                    status(f"the host is slowing joins after wrong tokens: waiting up to {held} s")
                    wait_for = held + self._step
                    deadline = time.monotonic() + wait_for
                    continue
                if kind == "pake":
                    if step != "pake":
                        raise SecurityError(_REORDERED.format(what="a second key exchange"))
                    await asyncio.to_thread(kx.finish, data)
                    step = "confirm"
                    if early is not None:
                        await self._reordered(sig, kx, early)
                elif kind == "confirm":
                    if step == "pake" and early is None:
                        early = data  # judged once the key is there (see _reordered)
                        continue
                    if step != "confirm":
                        raise SecurityError(_REORDERED.format(what="an unexpected confirmation"))
                    await self._confirm(sig, kx, data, resume)
                    status("key confirmed; connecting peer-to-peer")
                    step, wait_for = "offer", self._step
                    deadline = time.monotonic() + wait_for
                elif kind == "sealed":
                    if step in ("pake", "confirm"):
                        raise SecurityError(_REORDERED.format(what="sealed before the key"))
                    sealed = kx.open(data)
                    if sealed["t"] == "offer" and link is None:
                        step = "open"
                        rtc = await self._rtc
                        ice = merge(self.ice_servers, offered)
                        link = rtc.PeerLink(ice, self._on_frame, name="host")
                        answer = await link.accept_offer(sealed["sdp"])
                        await sig.send(
                            "signal", to="host", data=kx.seal({"t": "answer", "sdp": answer})
                        )
                        # Give the direct (or TURN) path a while; the server relay after.
                        wait = P2P_WAIT
                        local, far = reach.candidates(answer), reach.candidates(sealed["sdp"])
                        if not reach.may_connect(local, far, reach.local_networks()):
                            log.info(
                                "no direct path looks possible (candidates here: %s; the "
                                "host's: %s); trying for %.0f s before the server relay",
                                _kinds(local),
                                _kinds(far),
                                P2P_WAIT_UNLIKELY,
                            )
                            wait = P2P_WAIT_UNLIKELY
                        wait = min(wait, max(remaining, 1.0))
                        status(
                            "connecting peer-to-peer "
                            f"(through the server instead if nothing opens in {wait:.0f} s)"
                        )
                        opened = asyncio.ensure_future(link.wait_open(wait))
                    elif sealed["t"] == "candidate" and link is not None:
                        await link.add_candidate(sealed)
                    elif sealed["t"] == "wait" and link is None:
                        status("waiting for the host to let you in")
                        step, wait_for = "approval", APPROVAL_WAIT
                        deadline = time.monotonic() + APPROVAL_WAIT
            if opened is not None and opened.exception() is not None:
                if not isinstance(opened.exception(), ConnectTimeout):
                    raise opened.exception()  # type: ignore[misc]
                log.info("no peer-to-peer path opened; relaying through the server")
                status("no direct path; relaying through the server")
                await link.close()
                link = await self._relay(sig, kx)
            elif opened is not None:
                await opened
        except BaseException:
            if opened is not None:
                opened.cancel()
            if link is not None:
                await link.close()
            raise
        self.marks["open"] = time.monotonic()
        status(f"connected, {link.path}")
        return link

    async def _relay(self, sig: SignalingClient, kx: KeyExchange) -> RelayLink:
        """Carry frames through the server, sealed; this link owns the signaling connection."""
        await sig.send("signal", to="host", data=kx.seal({"t": "relay"}))

        async def send_text(text: str) -> None:
            await sig.send("relay", to="host", data=text)

        link = RelayLink(kx, send_text, self._on_frame, "host (relayed)")

        async def reader() -> None:
            try:
                while True:
                    msg = await sig.recv()
                    if msg["type"] == "relay":
                        link.deliver(msg["data"])
                    elif msg["type"] == "host_left":
                        link._mark_lost("the host left")
                        return
                    elif msg["type"] == "error":
                        log.warning("server: %s", printable(str(msg["message"])))
            except BeachError as exc:
                link._mark_lost(f"lost the server: {exc.message}")

        task = asyncio.create_task(reader())

        async def stop() -> None:
            await tasks.stop(task)
            await sig.close()

        link.on_shutdown.append(stop)
        await link.wait_open(1.0)
        return link

    async def _confirm(
        self, sig: SignalingClient, kx: KeyExchange, data: dict[str, Any], resume: str | None
    ) -> None:
        try:
            kx.verify(data)
        except WrongToken:
            with contextlib.suppress(BeachError):
                await sig.send("signal", to="host", data=payload("reject", reason=R_WRONG_TOKEN))
            raise
        await sig.send("signal", to="host", data=kx.confirmation())
        # First sealed word: who we were before, if this is a reconnect.
        await sig.send("signal", to="host", data=kx.seal({"t": "join", "resume": resume}))
        self.marks["keys"] = time.monotonic()

    async def _reordered(
        self, sig: SignalingClient, kx: KeyExchange, early: dict[str, Any]
    ) -> None:
        """The host's confirmation came before its key exchange: the server reorders. Still
        check it, and if it holds, confirm our side too, so that the host knows this was the
        right token and counts no wrong guess; then stop, as a security failure (the server is
        not honest). If it does not hold, say nothing: never a "wrong token" that was not."""
        try:
            kx.verify(early)
        except (WrongToken, ProtocolError):
            pass
        else:
            with contextlib.suppress(BeachError):
                await sig.send("signal", to="host", data=kx.confirmation())
        raise SecurityError(_REORDERED.format(what="the confirmation before the key"))
