"""`beach join`: meet the host through the server, prove the token with SPAKE2, connect
peer-to-peer, then mirror the shared terminal in this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from .errors import (
    BeachError,
    ConnectTimeout,
    HostGone,
    ProtocolError,
    Refused,
    ServerUnreachable,
    UnknownSession,
    WrongToken,
)
from .keys import KeyExchange, parse_token
from .protocol import (
    E_RATE_LIMITED,
    E_TOO_MANY,
    E_UNKNOWN_SESSION,
    FRAME_VERSION,
    Frame,
    Hello,
    decode_exit,
    decode_hello,
    decode_resize,
    encode_frame,
    encode_hello,
    encode_resize,
    parse_payload,
    payload,
)
from .pty import ExitStatus
from .signaling import SignalingClient
from .terminal import LocalTerminal, eprint
from .viewport import Viewport

log = logging.getLogger("beach.join")

DETACH_PREFIX = 0x1D  # Ctrl-]
DETACH_KEYS = (ord("d"), ord("."))
HELLO_TIMEOUT = 10.0
APPROVAL_WAIT = 130.0  # the host answers within 120 s or the answer is no
# More than this waiting for a slow local terminal: drop it and ask for a fresh screen.
LOCAL_BACKLOG = 8 * 1024 * 1024
# On the way out, undo modes the shared program may have left on: alternate screen, hidden
# cursor, mouse reporting, bracketed paste, application keypad, colours.
LEAVE = (
    b"\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l"
    b"\x1b[?2004l\x1b[?1l\x1b>\x1b[0m\x1b7\x1b[r\x1b8\x1b[23;0t\r\n"
)
# Save the window title (xterm's title stack) so notices in it can be undone on the way out.
PUSH_TITLE = b"\x1b[22;0t"


@dataclass
class JoinOptions:
    token: str
    server: str
    connect_timeout: float = 20.0
    ice_servers: tuple[str, ...] = ()


class Detached(Exception):
    pass


class JoinSession:
    def __init__(self, opts: JoinOptions, terminal: LocalTerminal) -> None:
        self.opts = opts
        self.term = terminal
        self.console = Console(stderr=True, highlight=False)
        self.token = parse_token(opts.token)
        self.link: Any = None
        self._done: asyncio.Future[int] | None = None
        self._decompress: Any = None
        self._hello: Hello | None = None
        self._hello_event = asyncio.Event()
        self._awaiting_snapshot = False
        self._prefix = False
        self._drew = False
        self.pty_size: tuple[int, int] | None = None
        self.viewport: Viewport | None = None
        self._told_small = False
        self.timings: dict[str, float] = {}

    def _mark(self, name: str) -> None:
        self.timings[name] = time.monotonic()

    # -- connecting ------------------------------------------------------------------------------

    async def run(self) -> int:
        self._mark("start")
        # aiortc takes ~0.3 s to import: do it in a thread while we talk to the server.
        rtc_import = asyncio.ensure_future(
            asyncio.to_thread(importlib.import_module, ".rtc", __package__)
        )
        sig = SignalingClient(self.opts.server)
        try:
            with self.console.status("connecting to server", spinner="dots") as status:
                await sig.connect(self.opts.connect_timeout)
                self._mark("server")
                status.update("waiting for the host")
                await self._connect(sig, status, rtc_import)
                self._mark("open")
            await sig.close()
            return await self._mirror()
        finally:
            rtc_import.cancel()
            await sig.close()
            if self.link is not None:
                await self.link.close()
            if self._drew:
                self.term.write(LEAVE)
                await self.term.drain(1.0)
            self.term.restore()

    async def _connect(self, sig: SignalingClient, status: Any, rtc_import: Any) -> None:
        try:
            await self._handshake(sig, status, rtc_import)
        except ServerUnreachable:
            # The server may have hung up right after telling us why (a refusal): find out.
            reason = await self._last_words(sig)
            if reason is not None:
                raise reason from None
            raise

    async def _last_words(self, sig: SignalingClient) -> BeachError | None:
        with contextlib.suppress(BeachError, TimeoutError):
            while True:
                msg = await sig.recv(0.5)
                if msg["type"] == "error":
                    return self._server_error(msg)
                if msg["type"] == "signal" and msg["data"].get("k") == "reject":
                    return self._rejected(str(msg["data"].get("reason")))
        return None

    def _rejected(self, reason: str) -> BeachError:
        if reason == "wrong token":
            return WrongToken("the join token is wrong or no longer valid")
        if reason == "denied":
            return Refused("the host did not let you in")
        return Refused(f"the host refused: {reason}")

    async def _handshake(self, sig: SignalingClient, status: Any, rtc_import: Any) -> None:
        t = self.token
        await sig.send("join", session=t.session)
        msg = await sig.recv(self.opts.connect_timeout)
        if msg["type"] == "error":
            raise self._server_error(msg)
        if msg["type"] != "joined":
            raise ProtocolError(f"unexpected answer from the server: {msg['type']}")
        peer_id = msg["peer"]
        kx = KeyExchange("joiner", t.session, peer_id, t.role, t.secret)
        await sig.send("signal", to="host", data=await asyncio.to_thread(kx.start))
        deadline = time.monotonic() + self.opts.connect_timeout
        opened: asyncio.Future[None] | None = None
        while opened is None or not opened.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectTimeout(
                    f"no connection to the host within {self.opts.connect_timeout:.0f} s "
                    "(no usable network path between the two machines?)"
                )
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
            mtype = msg["type"]
            if mtype == "host_left":
                raise HostGone("the host left before we could connect")
            if mtype == "error":
                raise self._server_error(msg)
            if mtype != "signal":
                continue
            data = parse_payload(msg["data"])
            kind = data["k"]
            if kind == "reject":
                raise self._rejected(data["reason"])
            if kind == "pake":
                await asyncio.to_thread(kx.finish, data)
            elif kind == "confirm":
                try:
                    kx.verify(data)
                except WrongToken:
                    with contextlib.suppress(BeachError):
                        await sig.send(
                            "signal", to="host", data=payload("reject", reason="wrong token")
                        )
                    raise
                await sig.send("signal", to="host", data=kx.confirmation())
                self._mark("keys")
                status.update("key confirmed; connecting peer-to-peer")
            elif kind == "sealed":
                sealed = kx.open(data)
                if sealed["t"] == "offer" and self.link is None:
                    rtc = await rtc_import
                    ice = [{"urls": [u]} for u in self.opts.ice_servers] + sig.ice_servers
                    self.link = rtc.PeerLink(ice, self._on_frame, name="host")
                    answer = await self.link.accept_offer(sealed["sdp"])
                    await sig.send(
                        "signal", to="host", data=kx.seal({"t": "answer", "sdp": answer})
                    )
                    opened = asyncio.ensure_future(self.link.wait_open(max(remaining, 1.0)))
                elif sealed["t"] == "candidate" and self.link is not None:
                    await self.link.add_candidate(sealed)
                elif sealed["t"] == "wait":
                    status.update("waiting for the host to let you in")
                    deadline = time.monotonic() + APPROVAL_WAIT
        if opened is not None:
            await opened  # raises ConnectTimeout if it did not open
        status.update(f"connected, {self.link.path}")

    def _server_error(self, msg: dict[str, Any]) -> BeachError:
        code, text = msg["code"], msg["message"]
        if code == E_UNKNOWN_SESSION:
            return UnknownSession(f"{text} (check the token, or the session has ended)")
        if code in (E_RATE_LIMITED, E_TOO_MANY, "dropped"):
            return Refused(text)
        return BeachError(f"the server said: {text}")

    # -- the shared terminal ---------------------------------------------------------------------

    async def _mirror(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        cols, rows = self.term.size()
        self.link.send(encode_hello(Hello(FRAME_VERSION, self.token.role, cols, rows, ("zlib",))))
        try:
            await asyncio.wait_for(self._hello_event.wait(), HELLO_TIMEOUT)
        except TimeoutError as exc:
            raise HostGone("the host did not greet us") from exc
        self.term.enter_raw()
        self.term.start_input(self._on_input, lambda: None)
        if self.term.is_tty:
            self.term.on_resize(self._on_resize)
        self._mark("hello")
        lost = asyncio.ensure_future(self.link.lost.wait())
        try:
            await asyncio.wait({lost, self._done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if self._done.done():
            return self._done.result()
        raise HostGone(f"lost the connection to the host ({self.link.lost_reason})")

    def _finish(self, code: int, line: str) -> None:
        if self._done is not None and not self._done.done():
            self._exit_line = line
            self._done.set_result(code)

    def _on_frame(self, kind: Frame, body: bytes) -> None:
        try:
            self._handle_frame(kind, body)
        except (ProtocolError, zlib.error) as exc:
            log.warning("bad frame from host: %s", exc)
            if self._done is not None and not self._done.done():
                self._done.set_exception(ProtocolError(f"the host sent a malformed frame: {exc}"))

    def _handle_frame(self, kind: Frame, body: bytes) -> None:
        if kind == Frame.HELLO and self._hello is None:
            self._hello = decode_hello(body)
            if "zlib" in self._hello.features:
                self._decompress = zlib.decompressobj()
            self.pty_size = (self._hello.cols, self._hello.rows)
            self.viewport = Viewport(self.term.size(), self.pty_size)
            self._hello_event.set()
        elif kind in (Frame.OUTPUT, Frame.SNAPSHOT):
            if self._decompress is not None:
                body = self._decompress.decompress(body)
            if kind == Frame.SNAPSHOT:
                self._awaiting_snapshot = False
            elif self._awaiting_snapshot:
                return
            self._draw(body)
            if self.term.pending > LOCAL_BACKLOG and not self._awaiting_snapshot:
                # Our own terminal is far behind: skip to the present rather than replay.
                log.info("terminal %d bytes behind: asking for a fresh screen", self.term.pending)
                self._awaiting_snapshot = True
                self.term.discard_pending()
                self.link.send(encode_frame(Frame.SNAPSHOT))
        elif kind == Frame.RESIZE:
            self.pty_size = decode_resize(body)
            self._fit(pty=self.pty_size)
        elif kind == Frame.EXIT:
            code, sig = decode_exit(body)
            self._finish(code, f"the host's shell {ExitStatus(code, sig).describe()}")
        elif kind == Frame.NOTICE:
            self._title(body.decode(errors="replace")[:200])

    def _draw(self, data: bytes) -> None:
        if not self._drew:
            self._drew = True
            self.term.write(PUSH_TITLE)
            self._fit()
        self.term.write(self.viewport.filter(data) if self.viewport else data)

    def _fit(self, window: tuple[int, int] | None = None, pty: tuple[int, int] | None = None):
        """Sizes changed (or first drawing): adjust the scroll region, say if we are too small."""
        if self.viewport is None or not self._drew:
            return
        self.term.write(self.viewport.resize(window, pty))
        notice = self.viewport.notice()
        if notice is not None or self._told_small:
            self._told_small = notice is not None
            self._title(notice or "beach: your window fits the shared terminal")

    def _title(self, text: str) -> None:
        if self.term.out_is_tty:
            safe = "".join(ch for ch in text if ch.isprintable())
            self.term.write(f"\x1b]2;{safe}\x07".encode())

    def _on_input(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            if self._prefix:
                self._prefix = False
                if byte in DETACH_KEYS:
                    self._finish(0, "detached; the session goes on without you")
                    return
                if byte != DETACH_PREFIX:
                    out.append(DETACH_PREFIX)
                out.append(byte)
            elif byte == DETACH_PREFIX:
                self._prefix = True
            else:
                out.append(byte)
        if out and self.link is not None:
            for i in range(0, len(out), 32 * 1024):
                self.link.send(encode_frame(Frame.INPUT, bytes(out[i : i + 32 * 1024])))

    def _on_resize(self, cols: int, rows: int) -> None:
        if self.link is not None:
            self.link.send(encode_resize(cols, rows))
        self._fit(window=(cols, rows))

    @property
    def exit_line(self) -> str:
        return getattr(self, "_exit_line", "")


async def join_and_report(opts: JoinOptions, terminal: LocalTerminal) -> int:
    session = JoinSession(opts, terminal)
    code = await session.run()
    if session.exit_line:
        eprint(f"beach: {session.exit_line}")
    return code
