"""One joiner's way in, as named steps: authenticate (SPAKE2 behind the guess gate), identify
(a returning joiner resumes), prove (with --authorized-keys/--github-user: the joiner signs
this handshake with an allowed SSH key), approval (the host's say, with --approve), connect
(the sealed WebRTC offer and answer, or the switch to the server relay) and hello (the
joiner's greeting on the channel). `Handshake.run` takes them in order and turns every
failure into a reject.

With nothing to decide between the key and the offer (no SSH key to prove, nobody to ask),
the sealed offer is made while SPAKE2 computes and goes out right behind the host's key
confirmation, before the joiner's: the joiner answers in the same flight as its confirmation,
a round trip sooner. Only the holder of the key can open the offer, and a joiner whose
confirmation fails has its peer connection closed unanswered.

Early relay: every offer says `"early": true` (this host can stream over the sealed relay at
once); a joiner whose sealed join says so too gets its HELLO and screen over the relay as soon
as its answer is in, and the session moves to the data channel when that opens
(link/handover.py). The offer may be sealed before the join arrives (an early offer), which is
why the host says it in every offer and acts on it only once the join agrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import tasks
from ..errors import (
    BeachError,
    ConnectTimeout,
    NotSent,
    ProtocolError,
    Refused,
    SecurityError,
    ServerUnreachable,
    WrongToken,
)
from ..identity.proof import ProofRefused
from ..keys import ROLES, KeyExchange
from ..link.base import Link
from ..link.handover import HandoverLink
from ..link.loader import load_rtc
from ..link.relay import RelayLink
from ..resume import ResumeRecord
from ..wire.frames import Frame
from ..wire.keyplane import (
    HOLD_MAX,
    R_DENIED,
    R_KEY_REFUSED,
    R_NO_KEY,
    R_NOT_ACCEPTING,
    R_PROTOCOL,
    R_SECURITY,
    R_TIMEOUT,
    R_WRONG_TOKEN,
    REJECT_REASONS,
    parse_payload,
    payload,
)
from .contract import JoinerHost, PeerInfo
from .guesses import MAX_DELAY

if TYPE_CHECKING:
    from ..identity.allowed import AllowedKeys  # imported when keys are asked: it loads asyncssh
    from ..link.rtc import PeerLink  # imported when used: it loads aiortc

log = logging.getLogger("beach.peer")

# Per step, at least (the host's --timeout / BEACH_CONNECT_TIMEOUT if longer).
HANDSHAKE_TIMEOUT = 30.0
HELLO_TIMEOUT = 10.0
LATE_HELLO = 0.8  # s: a greeting later than this is logged
INBOX_LIMIT = 64
EARLY_RELAY = True  # this host streams over the relay until the channel opens, if asked
_LEFT: dict[str, Any] = {"k": "left"}  # in the inbox: the joiner hung up (compared by identity)


class JoinerLeft(BeachError):
    """The server says the joiner hung up before its handshake ended."""


class NoKey(BeachError):
    """The joiner says it holds none of the allowed SSH keys."""


@dataclass
class Admission:
    """What the handshake has learned of the joiner, for its stream."""

    role: str = "?"  # the role its token is for, proven by the key exchange
    resume_id: str | None = None  # its identity across reconnections
    record: ResumeRecord | None = None  # how much of its input reached the PTY
    key: str | None = None  # the SSH key it proved (comment and fingerprint), if keys are asked


class Handshake:
    """The steps of one joiner's handshake. Its signals arrive through `deliver`, relayed
    frames through `relay_in`; the link it makes hands frames to `on_frame`, which sets
    `greeted` when the joiner's HELLO comes."""

    def __init__(
        self,
        host: JoinerHost,
        peer: PeerInfo,
        admission: Admission,
        ice_servers: list[dict[str, Any]],
        on_frame: Callable[[Frame, bytes], None],
        greeted: asyncio.Event,
    ) -> None:
        self.host = host
        self.peer = peer
        self.admission = admission
        self.link: Link | None = None  # once `connect` has begun
        self._ice_servers = ice_servers
        self._on_frame = on_frame
        self._greeted = greeted
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(INBOX_LIMIT)
        self._waiting = False  # for its role's turn or the host's approval: nothing to read
        self._early_relay: list[str] = []
        self._offered: PeerLink | None = None  # offered with the key exchange (see above)
        self._offering: asyncio.Task[str] | None = None  # its offer being made
        self.timeout = max(HANDSHAKE_TIMEOUT, host.opts.connect_timeout)
        self.early = False  # both ends said "early": the relay at once (see above)
        self.on_settled: Callable[[HandoverLink], None] | None = None  # the move is decided

    @property
    def offers_early(self) -> bool:
        return self.host.allowed_keys is None and not self.host.opts.approve

    async def run(self) -> Link | None:
        """The steps in order: the link to stream over, or None if the joiner was turned away
        (it has been told why) or left."""
        # Rejects name a code, never text: they travel unsealed (see keyplane.REJECT_REASONS).
        try:
            kx = await self.authenticate()  # its own deadlines: a guess delay is no timeout
            resumed = await asyncio.wait_for(self.identify(kx), self.timeout)
            if self.host.allowed_keys is not None:  # every connection proves, a resumed one too
                await asyncio.wait_for(self.prove(kx, self.host.allowed_keys), self.timeout)
            if self.host.opts.approve and not resumed:  # a returning joiner was let in before
                await self.approval(kx)
            async with asyncio.timeout(self.timeout):
                await self.connect(kx)
            return await self.hello(kx)
        except WrongToken:
            await self._reject(R_WRONG_TOKEN)
        except NoKey:  # it said so itself, and has gone
            self.host.key_refused(self.peer, "has none of the allowed SSH keys")
        except ProofRefused as exc:
            self.host.key_refused(self.peer, f"proved {exc.message}")
            await self._reject(R_KEY_REFUSED)
        except Refused as exc:
            await self._reject(exc.message if exc.message in REJECT_REASONS else R_NOT_ACCEPTING)
        except (TimeoutError, ConnectTimeout) as exc:
            log.info("peer %s: handshake timed out (%s)", self.peer.id, exc)
            await self._reject(R_TIMEOUT)
        except JoinerLeft as exc:
            log.info("peer %s: %s", self.peer.id, exc)
        except SecurityError as exc:  # a sealed message that failed to open, or a replay
            log.info("peer %s: %s", self.peer.id, exc)
            await self._reject(R_SECURITY)
        except ServerUnreachable as exc:  # the server told the joiner we left: nobody to tell
            log.info("peer %s: the handshake lost the server (%s)", self.peer.id, exc)
        except BeachError as exc:  # a message out of order or malformed
            log.info("peer %s: %s", self.peer.id, exc)
            await self._reject(R_PROTOCOL)
        finally:
            await self._drop_early_offer()
        return None

    async def _drop_early_offer(self) -> None:
        """An offer made with the key exchange that the handshake never got to use."""
        await tasks.stop(self._offering)
        if self._offered is not None and self._offered is not self.link:  # (None once handed over)
            await self._offered.close()
        self._offering = None

    # -- the steps -------------------------------------------------------------------------------

    async def authenticate(self) -> KeyExchange:
        """SPAKE2 and key confirmation; raises WrongToken if the joiner's secret differs."""
        # The joiner speaks first and names the role its token is for.
        theirs = await asyncio.wait_for(self._next("pake"), self.timeout)
        if not self.host.accepting:
            raise Refused(R_NOT_ACCEPTING)
        role = theirs.get("role")
        if role not in ROLES:
            raise ProtocolError("unknown role")
        self.admission.role = role
        # Attempts of one role take turns, each after the delay its wrong guesses have earned.
        self._waiting = True
        async with self.host.guesses[role].turn(self.peer.label, self._hold) as turn:
            self._waiting = False
            if not self.host.accepting:  # the guess limit was reached while this one waited
                raise Refused(R_NOT_ACCEPTING)
            async with asyncio.timeout(self.timeout):
                # The secret is read after the wait: a rotation meanwhile counts.
                secret = self.host.secret(role)
                kx = KeyExchange("host", self.host.session_id, self.peer.id, role, secret)
                if self.offers_early:  # made while SPAKE2 computes
                    self._offering = asyncio.create_task(self._make_offer())
                ours = await asyncio.to_thread(kx.start)
                await asyncio.to_thread(kx.finish, theirs)
                turn.spent = True  # from here the joiner may have it, unless it never left
                try:
                    await self.host.signal(self.peer.id, ours)
                except NotSent:
                    turn.spent = False  # the server connection dropped: no guess was made
                    raise
                await self.host.signal(self.peer.id, kx.confirmation())
                if self._offering is not None:
                    await self._send_offer(kx, await self._offering, unconfirmed=True)
                kx.verify(await self._next("confirm"))
                turn.verified = True
        return kx

    async def _hold(self, seconds: float) -> None:
        """This attempt waits for its turn: tell the joiner, whose deadline must allow it."""
        if seconds <= MAX_DELAY:  # a guess delay (queueing behind others says nothing new)
            self.host.guess_wait(self.peer, seconds)
        hold = payload("hold", s=min(math.ceil(seconds), HOLD_MAX))
        await self.host.signal(self.peer.id, hold)

    async def identify(self, kx: KeyExchange) -> bool:
        """The joiner's first sealed message names the identity of an earlier connection, if
        any; True if it is one we remember (its keystrokes carry on where they stopped)."""
        msg = kx.open(await self._next("sealed"))
        if msg["t"] != "join":
            raise ProtocolError(f"expected a join message, got {msg['t']}")
        self.early = EARLY_RELAY and msg.get("early") is True
        who = self.admission
        who.resume_id, who.record, resumed = self.host.resumes.resume(msg.get("resume"), who.role)
        if resumed:
            log.info("peer %s: resumes an earlier connection", self.peer.id)
        return resumed

    async def prove(self, kx: KeyExchange, allowed: AllowedKeys) -> None:
        """Only holders of the allowed SSH keys may join: the joiner signs this handshake's
        binding with one (its token alone is not enough). The hints let it find which of its
        keys to use without the host naming any; a joiner with none says so (R_NO_KEY)."""
        binding = kx.proof_binding()
        await self.host.signal(
            self.peer.id, kx.seal({"t": "prove", "hints": allowed.hints(binding)})
        )
        msg = kx.open(await self._next("sealed"))
        if msg["t"] != "proof":
            raise ProtocolError(f"expected a key proof, got {msg['t']}")
        key = allowed.check(binding, msg["key"], msg["sig"])
        self.admission.key = key.name
        log.info("peer %s: proved key %s", self.peer.id, key.name)

    async def approval(self, kx: KeyExchange) -> None:
        """The host says whether this joiner may come in (it waits, told so, meanwhile)."""
        await self.host.signal(self.peer.id, kx.seal({"t": "wait"}))
        self._waiting = True
        if not await self.host.approve(self.peer):
            raise Refused(R_DENIED)
        self._waiting = False

    async def connect(self, kx: KeyExchange) -> Link:
        """WebRTC, every message sealed (the DTLS fingerprint in the SDP is authentic), until
        the channel opens; or, if the joiner finds no peer-to-peer path, the relay."""
        if self._offered is None:
            await self._send_offer(kx, await self._make_offer())
        rtc = self._offered
        assert rtc is not None
        if self.early:
            return await self._connect_early(kx, rtc)
        link: Link = rtc
        self.link = link
        opened = asyncio.ensure_future(rtc.wait_open(self.timeout))
        getter: asyncio.Future[dict[str, Any]] | None = None
        try:
            while not opened.done():
                getter = asyncio.ensure_future(self._inbound())
                done, _ = await asyncio.wait({opened, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    break
                relay = await self._while_connecting(kx, rtc, getter.result())
                if relay is not None:
                    opened.cancel()
                    link = relay
                    opened = asyncio.ensure_future(link.wait_open(self.timeout))
            await opened
        finally:
            opened.cancel()
            if getter is not None:
                getter.cancel()
        return link

    async def _connect_early(self, kx: KeyExchange, rtc: PeerLink) -> Link:
        """The answer, then the relay at once and the channel in the background. The answer
        is opened before any relayed frame: both share the joiner's sequence numbers."""
        self.link = rtc
        while rtc.pc.remoteDescription is None:
            relay = await self._while_connecting(kx, rtc, await self._inbound())
            if relay is not None:  # the joiner asked for the plain relay after all
                await relay.wait_open(self.timeout)
                return relay
        name = f"peer {self.peer.id}"
        relay = RelayLink(kx, self._relay_out, self._on_frame, name)
        await relay.wait_open(self.timeout)  # open at once; this starts its heartbeat
        link = HandoverLink(relay, rtc, self._on_frame, name, self.timeout, self.on_settled)
        self.link = link
        self._offered = None  # the handover link owns it now
        for text in self._early_relay:
            relay.deliver(text)
        self._early_relay.clear()
        return link

    async def _make_offer(self) -> str:
        rtc = await load_rtc()
        self._offered = rtc.PeerLink(self._ice_servers, self._on_frame, name=f"peer {self.peer.id}")
        return await self._offered.make_offer()

    async def _send_offer(self, kx: KeyExchange, sdp: str, unconfirmed: bool = False) -> None:
        offer = kx.seal({"t": "offer", "sdp": sdp, "early": EARLY_RELAY}, unconfirmed=unconfirmed)
        await self.host.signal(self.peer.id, offer)

    async def _while_connecting(
        self, kx: KeyExchange, rtc: PeerLink, data: dict[str, Any]
    ) -> RelayLink | None:
        """One message while the channel opens: the answer, a trickled candidate, or the switch
        to the relay (the relay link is returned)."""
        sealed = parse_payload(data)
        if sealed["k"] == "reject":
            raise BeachError("the joiner gave up")
        msg = kx.open(sealed)
        if msg["t"] == "relay":
            return await self._use_relay(kx)
        if msg["t"] in ("answer", "candidate") and self.link is not rtc:
            raise ProtocolError(f"{msg['t']} after the switch to the relay")
        if msg["t"] == "answer":
            await rtc.accept_answer(msg["sdp"])
        elif msg["t"] == "candidate":
            await rtc.add_candidate(msg)
        return None

    async def _use_relay(self, kx: KeyExchange) -> RelayLink:
        """No peer-to-peer path: frames go through the server, still sealed."""
        assert self.link is not None
        await self.link.close()
        relay = RelayLink(kx, self._relay_out, self._on_frame, f"peer {self.peer.id}")
        self.link = relay
        for text in self._early_relay:
            relay.deliver(text)
        self._early_relay.clear()
        return relay

    async def hello(self, kx: KeyExchange) -> Link:
        """Greetings over the channel: the joiner says its window size and the features it
        speaks; the link it greeted on is returned. Until then the joiner may still switch to
        the relay: its wait for the channel can end just as ours opens, and the joiner's choice
        is the one both ends follow (its relayed HELLO waits in `_early_relay` meanwhile)."""
        if isinstance(self.link, HandoverLink):
            return await self._hello_early(self.link)
        greeted = asyncio.ensure_future(self._greeted.wait())
        started = time.monotonic()
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                while not greeted.done():
                    getter = asyncio.ensure_future(self._inbound())
                    try:
                        await asyncio.wait({greeted, getter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        getter.cancel()  # a message not yet taken stays in the inbox
                    if getter.done() and not getter.cancelled():
                        await self._before_hello(kx, getter.result())
        except TimeoutError as exc:
            raise BeachError("the joiner never said hello") from exc
        finally:
            greeted.cancel()
        took = time.monotonic() - started
        if took > LATE_HELLO:  # a HELLO lost as the channel opened, said again (join/session.py)
            log.info("peer %s: greeted %.1f s after the channel opened", self.peer.id, took)
        assert self.link is not None
        return self.link

    async def _hello_early(self, link: HandoverLink) -> Link:
        """The joiner's HELLO over the relay (or, held until its marker, the channel); nothing
        more comes as signals (its answer is in)."""
        greeted = asyncio.ensure_future(self._greeted.wait())
        lost = asyncio.ensure_future(link.lost.wait())
        try:
            await asyncio.wait(
                {greeted, lost}, timeout=HELLO_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            greeted.cancel()
            lost.cancel()
        if not self._greeted.is_set():
            raise BeachError("the joiner never said hello")
        log.info("peer %s: greeted over the %s, before the data channel", self.peer.id, link.path)
        return link

    async def _before_hello(self, kx: KeyExchange, data: dict[str, Any]) -> None:
        """A signal after our side of the channel opened: the switch to the relay, or a late
        candidate (nothing to do with it)."""
        sealed = parse_payload(data)
        if sealed["k"] == "reject":
            raise BeachError("the joiner gave up")
        msg = kx.open(sealed)
        if msg["t"] == "relay" and not isinstance(self.link, RelayLink):
            log.info("peer %s: switches to the relay after the channel opened", self.peer.id)
            relay = await self._use_relay(kx)
            await relay.wait_open(self.timeout)
        elif msg["t"] != "candidate":
            raise ProtocolError(f"{msg['t']} after the channel opened")

    # -- messages from the joiner, through the server ------------------------------------------

    def deliver(self, data: dict[str, Any]) -> bool:
        """A signal from the joiner; False if it sent more than the handshake holds."""
        try:
            self._inbox.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    def hear_left(self) -> bool:
        """The server says the joiner hung up. What it sent before still counts (its key
        confirmation may be in the inbox, and a confirmed attempt is no wrong guess), so while
        the handshake reads its inbox the news queues behind it; True if it did. An attempt
        waiting for its turn (it has spent nothing) or for the host's approval, or one with a
        link, simply ends (False)."""
        if self.link is not None or self._waiting:
            return False
        return self.deliver(_LEFT)

    def relay_in(self, text: str) -> None:
        """A relayed frame from the joiner."""
        if isinstance(self.link, RelayLink):
            self.link.deliver(text)
        elif isinstance(self.link, HandoverLink):
            self.link.relay.deliver(text)
        elif len(self._early_relay) < INBOX_LIMIT:
            # Relayed frames can overtake the sealed switch to the relay, which waits its turn
            # in the inbox: keep them for the RelayLink.
            self._early_relay.append(text)

    async def _relay_out(self, text: str) -> None:
        await self.host.relay(self.peer.id, text)

    async def _inbound(self) -> dict[str, Any]:
        data = await self._inbox.get()
        if data is _LEFT:
            raise JoinerLeft("the joiner left during the handshake")
        return data

    async def _next(self, kind: str) -> dict[str, Any]:
        data = parse_payload(await self._inbound())
        if data["k"] == "reject":
            if data["reason"] == R_WRONG_TOKEN:
                raise WrongToken("the joiner's token did not match")
            if data["reason"] == R_NO_KEY:
                raise NoKey("the joiner has no allowed key")
            raise BeachError("the joiner gave up")
        if data["k"] != kind:
            raise ProtocolError(f"expected {kind}, got {data['k']}")
        return data

    async def _reject(self, reason: str) -> None:
        with contextlib.suppress(BeachError):
            await self.host.signal(self.peer.id, payload("reject", reason=reason))
            await self.host.drop(self.peer.id, reason)
