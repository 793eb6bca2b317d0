"""The host's side of one joiner: key exchange, WebRTC offer, then a bounded sender.

Each joiner has its own task, inbox and output buffer, so a slow or hostile joiner can never
stall the PTY, the host's terminal or the other joiners. A joiner that falls more than
BACKLOG_LIMIT behind is not fed the backlog: its buffer is dropped and it gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import BeachError, ConnectTimeout, ProtocolError, Refused, SecurityError, WrongToken
from ..keys import ROLES, KeyExchange
from ..link.base import HIGH_WATER
from ..link.relay import RelayLink
from ..resume import ResumeRecord
from ..wire import compression
from ..wire.frames import (
    FRAME_VERSION,
    MAX_CHUNK_BYTES,
    Frame,
    Hello,
    decode_hello,
    decode_input,
    decode_resize,
    encode_ack,
    encode_exit,
    encode_frame,
    encode_hello,
    encode_resize,
)
from ..wire.keyplane import (
    HOLD_MAX,
    R_DENIED,
    R_NOT_ACCEPTING,
    R_PROTOCOL,
    R_SECURITY,
    R_TIMEOUT,
    R_WRONG_TOKEN,
    REJECT_REASONS,
    parse_payload,
    payload,
)
from .guesses import MAX_DELAY

if TYPE_CHECKING:
    from ..link.base import Link
    from ..wire.frames import ExitStatus
    from .session import HostSession

log = logging.getLogger("beach.peer")

HANDSHAKE_TIMEOUT = (
    30.0  # per phase, at least (the host's --timeout / BEACH_CONNECT_TIMEOUT if longer)
)
HELLO_TIMEOUT = 10.0
BACKLOG_LIMIT = 4 * 1024 * 1024
INBOX_LIMIT = 64
_LEFT: dict[str, Any] = {"k": "left"}  # in the inbox: the joiner hung up (compared by identity)
FEATURES = (compression.FEATURE,)
COALESCE_AFTER = 0.005  # a send within this long means output is streaming...
COALESCE_WAIT = 0.001  # ...so wait this long for more before the next frame
COALESCE_MIN = 4096  # ...unless there is less than this to send (an echo, a prompt)
ACK_DELAY = 0.05  # acknowledge keystrokes in batches
# Each snapshot a joiner asks for costs a full screen: at most one outstanding, and no more
# than this many a second after a burst of SNAPSHOT_BURST.
SNAPSHOT_RATE = 1.0
SNAPSHOT_BURST = 3


class JoinerLeft(BeachError):
    """The server says the joiner hung up before its handshake ended."""


class RemotePeer:
    def __init__(
        self, host: HostSession, peer_id: str, addr: str, ice_servers: list[dict[str, Any]]
    ) -> None:
        self.host = host
        self.ice_servers = ice_servers
        self.id = peer_id
        self.addr = addr
        self.role = "?"
        self.state = "handshake"
        self.size: tuple[int, int] | None = None
        self.link: Link | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(INBOX_LIMIT)
        self._waiting = False  # for its role's turn or the host's approval: nothing to read
        self._hello: Hello | None = None
        self._hello_event = asyncio.Event()
        self._queue: deque[tuple[bytes, int]] = deque()  # (unit, raw length) not yet sent
        self._behind = 0  # raw bytes they stand for
        self._last_send = 0.0
        self.deflate = False
        self._ack_timer: asyncio.TimerHandle | None = None
        self._resync = False
        self._asked: asyncio.TimerHandle | None = None  # a joiner's snapshot request, paced
        self._snapshot_tokens = float(SNAPSHOT_BURST)
        self._snapshot_refill = time.monotonic()
        self._wake = asyncio.Event()
        self._exit: bytes | None = None
        self._sender: asyncio.Task[None] | None = None
        self.dropped_input = 0
        self._early_relay: list[str] = []
        self._timeout = max(HANDSHAKE_TIMEOUT, host.opts.connect_timeout)
        self.resume_id: str | None = None
        self.record: ResumeRecord | None = None
        self.task = asyncio.create_task(self._run(), name=f"peer-{peer_id}")

    @property
    def label(self) -> str:
        return f"{self.id} ({self.addr})" if self.addr else self.id

    # -- lifecycle -------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            kx = await self._authenticate()  # its own deadlines: a guess delay is no timeout
            resumed = await asyncio.wait_for(self._identify(kx), self._timeout)
            if self.host.opts.approve and not resumed:  # a returning joiner was let in before
                await self.host.signal(self.id, kx.seal({"t": "wait"}))
                self._waiting = True
                if not await self.host.approve(self):
                    raise Refused(R_DENIED)
                self._waiting = False
            await asyncio.wait_for(self._connect(kx), self._timeout)
            assert self.link is not None
            self.state = "live"
            self.host.peer_live(self)
            await self.link.lost.wait()
            log.info("peer %s: %s", self.id, self.link.lost_reason)
        # Rejects name a code, never text: they travel unsealed (see protocol.REJECT_REASONS).
        except WrongToken:
            await self._reject(R_WRONG_TOKEN)
        except Refused as exc:
            await self._reject(exc.message if exc.message in REJECT_REASONS else R_NOT_ACCEPTING)
        except (TimeoutError, ConnectTimeout) as exc:
            log.info("peer %s: handshake timed out (%s)", self.id, exc)
            await self._reject(R_TIMEOUT)
        except JoinerLeft as exc:
            log.info("peer %s: %s", self.id, exc)
        except SecurityError as exc:  # a sealed message that failed to open, or a replay
            log.info("peer %s: %s", self.id, exc)
            await self._reject(R_SECURITY)
        except BeachError as exc:  # a message out of order or malformed
            log.info("peer %s: %s", self.id, exc)
            await self._reject(R_PROTOCOL)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("peer %s: unexpected error", self.id)
        finally:
            self.state = "closed"
            if self._ack_timer is not None:
                self._ack_timer.cancel()
            if self._asked is not None:
                self._asked.cancel()
            if self._sender is not None:
                self._sender.cancel()
            if self.link is not None:
                await self.link.close()
            self.host.peer_gone(self)

    async def _reject(self, reason: str) -> None:
        with contextlib.suppress(BeachError):
            await self.host.signal(self.id, payload("reject", reason=reason))
            await self.host.drop(self.id, reason)

    async def _next(self, kind: str) -> dict[str, Any]:
        data = parse_payload(await self._inbound())
        if data["k"] == "reject":
            if data["reason"] == "wrong token":
                raise WrongToken("the joiner's token did not match")
            raise BeachError("the joiner gave up")
        if data["k"] != kind:
            raise ProtocolError(f"expected {kind}, got {data['k']}")
        return data

    async def _authenticate(self) -> KeyExchange:
        """SPAKE2 and key confirmation; raises WrongToken if the joiner's secret differs."""
        # The joiner speaks first and names the role its token is for.
        theirs = await asyncio.wait_for(self._next("pake"), self._timeout)
        if not self.host.accepting:
            raise Refused(R_NOT_ACCEPTING)
        role = theirs.get("role")
        if role not in ROLES:
            raise ProtocolError("unknown role")
        self.role = role
        # Attempts of one role take turns, each after the delay its wrong guesses have earned.
        self._waiting = True
        async with self.host.guesses[role].turn(self.label, self._hold) as turn:
            self._waiting = False
            if not self.host.accepting:  # the guess limit was reached while this one waited
                raise Refused(R_NOT_ACCEPTING)
            async with asyncio.timeout(self._timeout):
                # The secret is read after the wait: a rotation meanwhile counts.
                secret = self.host.secret(role)
                kx = KeyExchange("host", self.host.session_id, self.id, role, secret)
                ours = await asyncio.to_thread(kx.start)
                await asyncio.to_thread(kx.finish, theirs)
                turn.spent = True
                await self.host.signal(self.id, ours)
                await self.host.signal(self.id, kx.confirmation())
                kx.verify(await self._next("confirm"))
                turn.verified = True
        return kx

    async def _hold(self, seconds: float) -> None:
        """This attempt waits for its turn: tell the joiner, whose deadline must allow it."""
        if seconds <= MAX_DELAY:  # a guess delay (queueing behind others says nothing new)
            self.host.guess_wait(self, seconds)
        await self.host.signal(self.id, payload("hold", s=min(math.ceil(seconds), HOLD_MAX)))

    async def _identify(self, kx: KeyExchange) -> bool:
        """The joiner's first sealed message names the identity of an earlier connection, if
        any; True if it is one we remember (its keystrokes carry on where they stopped)."""
        msg = kx.open(await self._next("sealed"))
        if msg["t"] != "join":
            raise ProtocolError(f"expected a join message, got {msg['t']}")
        self.resume_id, self.record, resumed = self.host.resumes.resume(
            msg.get("resume"), self.role
        )
        if resumed:
            log.info("peer %s: resumes an earlier connection", self.id)
        return resumed

    async def _connect(self, kx: KeyExchange) -> None:
        from ..link.rtc import PeerLink

        # WebRTC, every message sealed: the DTLS fingerprint in the SDP is authentic.
        self.state = "connecting"
        self.link = PeerLink(self.ice_servers, self._on_frame, name=f"peer {self.id}")
        offer = await self.link.make_offer()
        await self.host.signal(self.id, kx.seal({"t": "offer", "sdp": offer}))
        opened = asyncio.ensure_future(self.link.wait_open(self._timeout))
        getter: asyncio.Future[dict[str, Any]] | None = None
        try:
            while not opened.done():
                getter = asyncio.ensure_future(self._inbound())
                done, _ = await asyncio.wait({opened, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    break
                data = parse_payload(getter.result())
                if data["k"] == "reject":
                    raise BeachError("the joiner gave up")
                msg = kx.open(data)
                if msg["t"] == "answer":
                    await self.link.accept_answer(msg["sdp"])
                elif msg["t"] == "candidate":
                    await self.link.add_candidate(msg)
                elif msg["t"] == "relay":
                    # No peer-to-peer path: frames go through the server, still sealed.
                    opened.cancel()
                    await self.link.close()
                    self.link = RelayLink(kx, self._relay_out, self._on_frame, f"peer {self.id}")
                    for text in self._early_relay:
                        self.link.deliver(text)
                    self._early_relay.clear()
                    opened = asyncio.ensure_future(self.link.wait_open(self._timeout))
            await opened
        finally:
            opened.cancel()
            if getter is not None:
                getter.cancel()
        # Greetings over the channel; the joiner says which features it speaks.
        try:
            await asyncio.wait_for(self._hello_event.wait(), HELLO_TIMEOUT)
        except TimeoutError as exc:
            raise BeachError("the joiner never said hello") from exc

    async def _relay_out(self, text: str) -> None:
        await self.host.relay(self.id, text)

    def relay_in(self, text: str) -> None:
        if isinstance(self.link, RelayLink):
            self.link.deliver(text)
        elif len(self._early_relay) < INBOX_LIMIT:
            # Relayed frames can overtake the sealed switch to the relay, which waits its turn
            # in the inbox: keep them for the RelayLink.
            self._early_relay.append(text)

    @property
    def was_live(self) -> bool:
        """It got as far as sharing the screen (so its leaving is news for the host)."""
        return self._sender is not None

    @property
    def relayed(self) -> bool:
        return isinstance(self.link, RelayLink)

    async def _inbound(self) -> dict[str, Any]:
        data = await self.inbox.get()
        if data is _LEFT:
            raise JoinerLeft("the joiner left during the handshake")
        return data

    def left(self) -> None:
        """The server says the joiner hung up. What it sent before still counts (its key
        confirmation may be in the inbox, and a confirmed attempt is no wrong guess), so while
        the handshake reads its inbox the news queues behind it. An attempt waiting for its
        turn (it has spent nothing) or for the host's approval simply ends."""
        if self.link is not None or self._waiting:
            self.close()
            return
        try:
            self.inbox.put_nowait(_LEFT)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        """Called when the joiner is gone (or the host is ending)."""
        if self.link is not None:
            self.link._mark_lost("the joiner left")
        elif not self.task.done():
            self.task.cancel()

    # -- frames from the joiner ----------------------------------------------------------------

    def _on_frame(self, kind: Frame, body: bytes) -> None:
        try:
            if kind == Frame.HELLO and self._hello is None:
                self._hello = decode_hello(body)
                self.size = (self._hello.cols, self._hello.rows)
                self._hello_event.set()
            elif kind == Frame.INPUT:
                offset, data = decode_input(body)
                if self.state == "live" and self.role == "rw" and self.record is not None:
                    fresh = self.record.accept(offset, data)
                    if fresh:
                        self.host.input_from_peer(self, fresh)
                    if self._ack_timer is None:  # one ACK per burst of keystrokes
                        loop = asyncio.get_running_loop()
                        self._ack_timer = loop.call_later(ACK_DELAY, self._send_ack)
                else:
                    if not self.dropped_input:
                        log.info("peer %s: dropping input from a %s joiner", self.id, self.role)
                    self.dropped_input += len(data)
            elif kind == Frame.RESIZE:
                self.size = decode_resize(body)
                if self.state == "live":
                    self.host.sizes_changed()
            elif kind == Frame.SNAPSHOT:  # a joiner asks to be brought up to date
                if self._asked is None:  # else one is already waiting for its turn
                    self._snapshot_due()
        except ProtocolError as exc:
            log.warning("peer %s: bad frame: %s", self.id, exc)

    def _snapshot_due(self) -> None:
        """A joiner's snapshot request: coalesced (one asked while another is outstanding adds
        nothing) and paced by a token bucket. Never dropped: an honest joiner discards output
        until its snapshot comes. The host's own resyncs (at start, or when the joiner falls
        behind) do not pass through here and never wait."""
        self._asked = None
        if self._resync or self.state == "closed":
            return
        now = time.monotonic()
        elapsed, self._snapshot_refill = now - self._snapshot_refill, now
        tokens = min(SNAPSHOT_BURST, self._snapshot_tokens + elapsed * SNAPSHOT_RATE)
        if tokens >= 1:
            self._snapshot_tokens = tokens - 1
            self.request_resync()
        else:
            self._snapshot_tokens = tokens
            delay = (1 - tokens) / SNAPSHOT_RATE
            self._asked = asyncio.get_running_loop().call_later(delay, self._snapshot_due)

    def _send_ack(self) -> None:
        self._ack_timer = None
        if self.link is not None and self.record is not None:
            self.link.send_control(encode_ack(self.record.applied))

    # -- output to the joiner --------------------------------------------------------------------

    def start(self, cols: int, rows: int) -> None:
        """Greet the joiner and start streaming, beginning with a snapshot."""
        assert self.link is not None and self._hello is not None
        features = tuple(f for f in FEATURES if f in self._hello.features)
        self.deflate = compression.FEATURE in features
        applied = self.record.applied if self.record is not None else 0
        hello = Hello(FRAME_VERSION, self.role, cols, rows, features, applied, self.resume_id)
        self.link.send_control(encode_hello(hello))
        self._resync = True
        self._wake.set()
        self._sender = asyncio.create_task(self._send_loop(), name=f"sender-{self.id}")

    def send_size(self, cols: int, rows: int) -> None:
        if self.link is not None and self.state == "live":
            self.link.send_control(encode_resize(cols, rows))

    def notice(self, text: str) -> None:
        if self.link is not None:
            self.link.send_control(encode_frame(Frame.NOTICE, text.encode()[:1024]))

    def output(self, unit: bytes, raw_len: int) -> None:
        """One PTY read for this joiner: a deflate unit, or the raw bytes (no `deflate`)."""
        if self._sender is None or self._exit is not None:
            return
        if self._behind + raw_len > BACKLOG_LIMIT:
            log.info(
                "peer %s: more than %d bytes behind, sending a fresh screen", self.id, BACKLOG_LIMIT
            )
            self.request_resync()
            return
        link = self.link
        if (
            not self._queue
            and not self._resync
            and raw_len < COALESCE_MIN
            and link is not None
            and link.buffered <= HIGH_WATER
        ):
            # An echo or a prompt with nothing queued before it: out at once, without the hop
            # through the sender task (that hop is a measurable part of keystroke latency).
            self._send_body(link, Frame.OUTPUT, unit)
            return
        self._queue.append((unit, raw_len))
        self._behind += raw_len
        self._wake.set()

    def request_resync(self) -> None:
        self._queue.clear()
        self._behind = 0
        self._resync = True
        self._wake.set()

    def finish(self, status: ExitStatus) -> None:
        self._exit = encode_exit(status.code, status.signal)
        self._wake.set()

    def _send_body(self, link: Link, kind: Frame, body: bytes) -> None:
        """One or more frames: a unit larger than a frame continues in OUTPUT frames (the
        joiner's inflater takes the stream in any pieces)."""
        step = MAX_CHUNK_BYTES
        link.send(encode_frame(kind, body[:step]))
        for i in range(step, len(body), step):
            link.send(encode_frame(Frame.OUTPUT, body[i : i + step]))
        self._last_send = time.monotonic()

    async def _send_loop(self) -> None:
        link = self.link
        assert link is not None
        while not link.lost.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._behind >= COALESCE_MIN and time.monotonic() - self._last_send < COALESCE_AFTER:
                # Output is streaming: give the PTY a moment to add to this frame. A keystroke's
                # echo (a few bytes) goes out at once.
                await asyncio.sleep(COALESCE_WAIT)
            while (self._queue or self._resync) and not link.lost.is_set():
                await link.writable()
                if self._resync:
                    self._resync = False
                    self._queue.clear()
                    self._behind = 0
                    snap = self.host.snapshot()
                    self._send_body(
                        link, Frame.SNAPSHOT, compression.standalone(snap) if self.deflate else snap
                    )
                    continue
                # Units concatenate into one valid stream: pack as many as fit in a frame.
                unit, raw_len = self._queue.popleft()
                body = bytearray(unit)
                self._behind -= raw_len
                while self._queue and len(body) + len(self._queue[0][0]) <= MAX_CHUNK_BYTES:
                    unit, raw_len = self._queue.popleft()
                    body += unit
                    self._behind -= raw_len
                self._send_body(link, Frame.OUTPUT, bytes(body))
            if self._exit is not None and not self._queue:
                link.send_control(self._exit)
                return

    async def flushed(self, timeout: float) -> None:
        """Wait until the exit frame is handed to the channel and the joiner hangs up. Only
        the timeouts are quiet: a cancellation of the caller is raised."""
        with contextlib.suppress(TimeoutError):
            if self._sender is not None:
                # asyncio.wait: the sender's own end (even cancelled) is not raised here, and
                # the timeout does not cancel it.
                await asyncio.wait_for(asyncio.wait({self._sender}), timeout)
            if self.link is not None:
                await asyncio.wait_for(self.link.lost.wait(), timeout)
