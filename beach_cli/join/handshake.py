"""One join attempt as named steps, in the only order an honest server delivers them:

    server -> introduce -> pake -> confirm [-> prove] -> offer [-> approval] -> open [-> relay]

Early relay: our sealed join says `"early": true`; a host whose offer says so too streams over
the sealed relay at once, and `open` returns a HandoverLink that moves to the data channel when
it opens (link/handover.py), instead of waiting for the channel. BEACH_EARLY_RELAY=0 joins as
before (the channel first).

`Handshake.step` is the current step. Each step waits for what only it may receive, under its
own deadline (see `_limit`), and names the step after it; a wait that runs out says which
step's answer never came. Key-plane messages out of their step are a security failure: only
a dishonest server reorders them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import tasks
from ..errors import (
    BeachError,
    ConnectTimeout,
    HostGone,
    KeyRefused,
    ProtocolError,
    SecurityError,
    ServerUnreachable,
    WrongToken,
)
from ..keys import KeyExchange, Token
from ..link import reach
from ..link.base import Link
from ..link.handover import HandoverLink
from ..link.ice import merge
from ..rendezvous import SignalingClient
from ..wire.frames import Frame
from ..wire.keyplane import HOLD_MAX, R_NO_KEY, R_WRONG_TOKEN, parse_payload, payload
from .refusals import rejected, server_error
from .relayed import relay_through

LAST_WORD_WAIT = 1.0  # s: for what the server said before it hung up (see _last_word)
HOST_LEFT = "the host left before we could connect"
APPROVAL_WAIT = 130.0  # the host answers within 120 s or the answer is no
# How long a direct or TURN path may take to open before frames go through the server...
P2P_WAIT = 10.0
# ...and when the candidates show no direct path could open (say this network lets no UDP out):
# still long enough for a routed private network, which the candidates cannot reveal.
P2P_WAIT_UNLIKELY = 3.0

log = logging.getLogger("beach.dial")

# Signs a handshake's proof binding with an allowed SSH key, given the host's hints: the sealed
# {"t": "proof"} message (identity/signer.py), or KeyRefused.
Prover = Callable[[bytes, list[str]], Awaitable[dict[str, Any]]]

# What did not arrive when a step's wait runs out.
_LATE = {
    "introduce": "the server did not answer our join within {t:.0f} s",
    "pake": "the host did not answer within {t:.0f} s (its key exchange message never came)",
    "confirm": "the host's key confirmation did not arrive within {t:.0f} s",
    "offer": (
        "the host's offer did not arrive within {t:.0f} s after the key was confirmed "
        "(is the server passing messages on?)"
    ),
    "approval": "the host did not let you in within {t:.0f} s",
}
_REORDERED = (
    "the server delivered the host's key exchange out of order ({what}); an honest server "
    "never does: not connecting"
)
# A key-plane message where it cannot be: once the key is derived (the confirm step)...
_BEFORE_CONFIRM = {
    "hold": "a hold after the key",
    "pake": "a second key exchange",
    "sealed": "sealed before the key",
}
# ...and once it is confirmed, when only sealed messages may come.
_AFTER_CONFIRM = {
    "hold": "a hold after the key",
    "pake": "a second key exchange",
    "confirm": "an unexpected confirmation",
}


def _kinds(cands: list[reach.Candidate]) -> str:
    return ", ".join(sorted({c.kind for c in cands})) or "none"


class Handshake:
    """Dials the host once over `sig` (not connected yet); `run()` returns the open link."""

    def __init__(
        self,
        sig: SignalingClient,
        token: Token,
        timeout: float,
        *,
        status: Callable[[str], None],
        resume: str | None,
        rtc: Awaitable[Any],
        ice_servers: list[str],
        on_frame: Callable[[Frame, bytes], None],
        marks: dict[str, float],
        prover: Prover | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.sig = sig
        self.token = token
        self.timeout = timeout  # each step's wait, unless `_limit` says otherwise
        self.status = status
        self.resume = resume
        self.rtc = rtc
        self.ice_servers = ice_servers
        self.on_frame = on_frame
        self.marks = marks
        self.prover = prover
        self.on_settled = on_settled  # an early-relay link decided its path
        self.step = "server"
        self._steps: dict[str, Callable[[], Awaitable[str | None]]] = {
            "server": self._server,
            "introduce": self._introduce,
            "pake": self._pake,
            "confirm": self._confirm,
            "offer": self._offer,
            "prove": self._prove,
            "approval": self._offer,  # the same wait for the offer, with a person deciding
            "open": self._open,
            "relay": self._relay,
        }
        self._deadline: float | None = None  # the current step's
        self._allowed = 0.0  # how long the current step may wait, to say so if it runs out
        self._kx: KeyExchange | None = None
        self._offered: Any = None  # the server's ICE servers: fresh TURN credentials, if any
        self._early: dict[str, Any] | None = None  # a confirmation that overtook the pake
        self._host_sdp = ""  # the host's offer
        self._hints: list[str] | None = None  # the host asks for an SSH key (see identity/)
        self._link: Any = None  # the peer-to-peer link being opened, then the open link
        self.early = os.environ.get("BEACH_EARLY_RELAY", "1") != "0"  # we ask for it
        self._host_early = False  # the host's offer says it can

    def _limit(self, step: str) -> float | None:
        """How long `step` waits for its messages. The direct attempt has no deadline of its
        own here: the link's opening timeout bounds it, and its end means the relay."""
        if step == "approval":
            return APPROVAL_WAIT
        if step in ("open", "relay", "prove"):  # "prove": the agent's own wait bounds it
            return None
        return self.timeout

    async def run(self) -> Link:
        step: str | None = "server"
        try:
            while step is not None:
                self.step = step
                self._wait(self._limit(step))
                step = await self._steps[step]()
        except BaseException as exc:
            if self._link is not None:
                await self._link.close()
            if isinstance(exc, ServerUnreachable):
                raise await self._last_word(exc) from exc
            raise
        link: Link = self._link
        self.marks["open"] = time.monotonic()
        self.status(f"connected, {link.path}")  # an early-relay link's title says where it goes
        return link

    @property
    def kx(self) -> KeyExchange:
        assert self._kx is not None, "no key exchange before the introduction"
        return self._kx

    # -- deadlines and messages ---------------------------------------------------------------

    def _wait(self, seconds: float | None) -> None:
        """The current step waits `seconds` from now (None: no deadline of its own)."""
        self._allowed = seconds or 0.0
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def _late(self) -> BeachError:
        if self._early is not None:
            return SecurityError(_REORDERED.format(what="a confirmation, no key"))
        return ConnectTimeout(_LATE[self.step].format(t=self._allowed))

    def _left(self) -> float | None:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        return left

    async def _signal(self) -> dict[str, Any]:
        """The host's next key-plane message; news from the server ends the attempt."""
        while True:
            try:
                msg = await self.sig.recv(self._left())
            except TimeoutError:
                continue  # _left() names what is late
            data = self._read(msg)
            if data is not None:
                return data

    @staticmethod
    def _read(msg: dict[str, Any]) -> dict[str, Any] | None:
        """A server message: the host's signal, or None for one that is not; the attempt's
        end raised (the host left, the server's error, the host's reject)."""
        if msg["type"] == "host_left":
            raise HostGone(HOST_LEFT)
        if msg["type"] == "error":
            raise server_error(msg)
        if msg["type"] != "signal":
            return None
        data = parse_payload(msg["data"])
        if data["k"] == "reject":
            raise rejected(data["reason"])
        return data

    async def _last_word(self, exc: ServerUnreachable) -> BeachError:
        """A send failed as the server hung up: what came before that (the host's reject, the
        host left, the server's error) is the reason to give, if it came; else the failure."""
        if self.sig.closed:  # nothing more to read
            return exc
        try:
            while True:
                try:
                    msg = await self.sig.recv(LAST_WORD_WAIT)
                except (BeachError, TimeoutError):
                    return exc
                self._read(msg)
        except BeachError as end:
            return end

    def _sealed(self, data: dict[str, Any]) -> dict[str, Any]:
        """Once the key is confirmed only sealed messages may come: opened here."""
        if data["k"] != "sealed":
            raise SecurityError(_REORDERED.format(what=_AFTER_CONFIRM[data["k"]]))
        return self.kx.open(data)

    # -- the steps, in order ------------------------------------------------------------------

    async def _server(self) -> str:
        """Connect to the server (the WebSocket and its welcome, under one deadline)."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.sig.connect(self.timeout)
        except TimeoutError as exc:
            raise ServerUnreachable(f"the server at {self.sig.url} did not answer in time") from exc
        self.marks["server"] = time.monotonic()
        self.status("waiting for the host")
        return "introduce"

    async def _introduce(self) -> str:
        """The server introduces us to the host. Our SPAKE2 message goes right behind the
        join, before the server has named us (the message does not depend on our peer id:
        KeyExchange.introduced), a round trip sooner; the server handles messages in order,
        so it reaches the host as soon as we are its joiner."""
        t = self.token
        self._kx = KeyExchange("joiner", t.session, "", t.role, t.secret)
        ours = await asyncio.to_thread(self._kx.start)
        await self.sig.send("join", session=t.session)
        await self.sig.send("signal", to="host", data=ours)
        try:
            msg = await self.sig.recv(self._left())
        except TimeoutError:
            raise self._late() from None
        if msg["type"] == "error":
            raise server_error(msg)
        if msg["type"] != "joined":
            raise ProtocolError(f"unexpected answer from the server: {msg['type']}")
        self._offered = msg.get("ice_servers", self.sig.ice_servers)
        self.kx.introduced(msg["peer"])
        return "pake"

    async def _pake(self) -> str:
        """The host's SPAKE2 message. Before it, and only before it, the host may hold us
        (it slows attempts after wrong tokens): the wait grows by the hold, up to HOLD_MAX."""
        while True:
            data = await self._signal()
            kind = data["k"]
            if kind == "hold":
                held = min(data["s"], HOLD_MAX)
                self.status(f"the host is slowing joins after wrong tokens: waiting up to {held} s")
                self._wait(held + self.timeout)
            elif kind == "pake":
                await asyncio.to_thread(self.kx.finish, data)
                if self._early is not None:
                    await self._reordered(self._early)
                return "confirm"
            elif kind == "confirm" and self._early is None:
                self._early = data  # judged once the key is there (see _reordered)
            elif kind == "confirm":
                raise SecurityError(_REORDERED.format(what="an unexpected confirmation"))
            else:
                raise SecurityError(_REORDERED.format(what="sealed before the key"))

    async def _confirm(self) -> str:
        """The host's key confirmation: the token was right (or not: we tell the host)."""
        data = await self._signal()
        if data["k"] != "confirm":
            raise SecurityError(_REORDERED.format(what=_BEFORE_CONFIRM[data["k"]]))
        try:
            self.kx.verify(data)
        except WrongToken:
            with contextlib.suppress(BeachError):
                await self.sig.send(
                    "signal", to="host", data=payload("reject", reason=R_WRONG_TOKEN)
                )
            raise
        await self.sig.send("signal", to="host", data=self.kx.confirmation())
        # First sealed word: who we were before, if this is a reconnect.
        await self.sig.send(
            "signal",
            to="host",
            data=self.kx.seal({"t": "join", "resume": self.resume, "early": self.early}),
        )
        self.marks["keys"] = time.monotonic()
        self.status("key confirmed; connecting peer-to-peer")
        return "offer"

    async def _offer(self) -> str:
        """The host's sealed offer; or first its word that a person decides (approval), after
        which the offer may take APPROVAL_WAIT. A second such word changes nothing."""
        while True:
            sealed = self._sealed(await self._signal())
            if sealed["t"] == "offer":
                self._host_sdp = sealed["sdp"]
                self._host_early = sealed.get("early") is True
                return "open"
            if sealed["t"] == "prove" and self.step == "offer" and self._hints is None:
                self._hints = sealed["hints"]
                return "prove"
            if sealed["t"] == "wait" and self.step == "offer":
                self.status("waiting for the host to let you in")
                return "approval"
            # Else a candidate before the offer (nothing to add it to yet), or a message meant
            # for the host: nothing to do.

    async def _open(self) -> str | None:
        """Answer the offer and give the direct (or TURN) path a while to open, taking the
        host's trickled candidates meanwhile; if none opens, the relay."""
        rtc = await self.rtc
        ice = merge(self.ice_servers, self._offered)
        self._link = peer = rtc.PeerLink(ice, self.on_frame, name="host")
        answer = await peer.accept_offer(self._host_sdp)
        await self.sig.send("signal", to="host", data=self.kx.seal({"t": "answer", "sdp": answer}))
        wait = self._p2p_wait(answer)
        if self.early and self._host_early:
            await self._early_relay(peer, wait)
            return None
        self.status(
            f"connecting peer-to-peer (through the server instead if nothing opens in {wait:.0f} s)"
        )
        opened = asyncio.ensure_future(peer.wait_open(wait))
        try:
            while not opened.done():
                recv = asyncio.ensure_future(self._signal())
                try:
                    await asyncio.wait({recv, opened}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not recv.done():
                        await tasks.stop(recv)  # the relay reads the connection next
                if recv.done() and not recv.cancelled():
                    sealed = self._sealed(recv.result())
                    if sealed["t"] == "candidate":
                        await peer.add_candidate(sealed)
                    # A second offer, or a late `wait`: nothing to do.
        finally:
            opened.cancel()
        failure = opened.exception()
        if failure is None:
            return None
        if not isinstance(failure, ConnectTimeout):
            raise failure
        log.info("no peer-to-peer path opened; relaying through the server")
        self.status("no direct path; relaying through the server")
        return "relay"

    async def _early_relay(self, peer: Any, wait: float) -> None:
        """Both ends said "early": the relay now (our answer is sealed before any relayed
        frame, as the host opens them in order), the channel when it opens within `wait`."""
        relay = await relay_through(self.sig, self.kx, self._frames, ask=False)
        self._link = HandoverLink(relay, peer, self._frames, "host", wait, self._settled)
        log.info("streaming through the server relay until the data channel opens")

    def _frames(self, kind: Frame, body: bytes) -> None:
        self.on_frame(kind, body)

    def _settled(self, link: HandoverLink) -> None:
        """The path is decided (moved to the data channel, or staying on the relay)."""
        if self.on_settled is not None:
            self.on_settled()

    async def _prove(self) -> str:
        """The host admits only certain SSH keys: sign this handshake with one of ours, or
        tell the host we have none (either way our token was right: no wrong guess)."""
        assert self._hints is not None
        self.status("the host asks for an SSH key: signing")
        try:
            if self.prover is None:
                raise KeyRefused("this session admits only certain SSH keys")
            proof = await self.prover(self.kx.proof_binding(), self._hints)
        except KeyRefused:
            with contextlib.suppress(BeachError):
                await self.sig.send("signal", to="host", data=payload("reject", reason=R_NO_KEY))
            raise
        await self.sig.send("signal", to="host", data=self.kx.seal(proof))
        self.status("key proven; connecting peer-to-peer")
        return "offer"

    def _p2p_wait(self, answer: str) -> float:
        """P2P_WAIT, or P2P_WAIT_UNLIKELY when the candidates show no direct path could open;
        never longer than a step's timeout, never under 1 s."""
        wait = P2P_WAIT
        local, far = reach.candidates(answer), reach.candidates(self._host_sdp)
        if not reach.may_connect(local, far, reach.local_networks()):
            log.info(
                "no direct path looks possible (candidates here: %s; the host's: %s); "
                "trying for %.0f s before the server relay",
                _kinds(local),
                _kinds(far),
                P2P_WAIT_UNLIKELY,
            )
            wait = P2P_WAIT_UNLIKELY
        return min(wait, max(self.timeout, 1.0))

    async def _relay(self) -> None:
        """Frames through the server, sealed; the relay link owns the signaling connection."""
        await self._link.close()  # the peer-to-peer attempt
        self._link = None
        self._link = await relay_through(self.sig, self.kx, self.on_frame)
        return None

    async def _reordered(self, early: dict[str, Any]) -> None:
        """The host's confirmation came before its key exchange: the server reorders. Still
        check it, and if it holds, confirm our side too, so that the host knows this was the
        right token and counts no wrong guess; then stop, as a security failure (the server is
        not honest). If it does not hold, say nothing: never a "wrong token" that was not."""
        try:
            self.kx.verify(early)
        except (WrongToken, ProtocolError):
            pass
        else:
            with contextlib.suppress(BeachError):
                await self.sig.send("signal", to="host", data=self.kx.confirmation())
        raise SecurityError(_REORDERED.format(what="the confirmation before the key"))
