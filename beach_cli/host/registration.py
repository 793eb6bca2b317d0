"""The host's registration with the rendezvous server (`beach serve`, or one embedded in the
host): register or reclaim the session, hand the server's messages to the session, and
reconnect with backoff when the connection drops, reclaiming the same session so the tokens
stay valid (or, if the server will not give it back, a new session with new tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any, Protocol

from ..backoff import Backoff
from ..errors import BeachError, NotSent, ProtocolError, Refused, ServerUnreachable
from ..link.ice import merge
from ..rendezvous import SignalingClient, short_url
from ..text import printable
from ..wire.signaling import E_RATE_LIMITED, E_UNKNOWN_SESSION
from .lan import advertised_address
from .options import HostOptions

log = logging.getLogger("beach.host")

RECONNECT_FIRST_DELAY = 1.0
RECONNECT_MAX_DELAY = 10.0
REFUSED_MAX_DELAY = 60.0  # a server that refuses us (not a network failure) is asked less often


class Refusal(Refused):
    """The server answered our `host` with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the server refused to host the session: {message}")
        self.code = code


def embedded_addresses(bind: str, advertise: str | None) -> tuple[str, str]:
    """Where the host dials its own embedded server, and the address joiners are told: the
    bound address itself unless it is the wildcard (then loopback, and this machine's address
    on its network)."""
    try:
        unspecified = ipaddress.ip_address(bind).is_unspecified
    except ValueError:  # a host name: it is dialled, and printed, as given
        unspecified = False
    if unspecified:
        return ("::1" if ":" in bind else "127.0.0.1"), advertise or advertised_address()
    return bind, advertise or bind


def url_host(address: str) -> str:
    """An address as the host part of a URL (an IPv6 literal in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


class ServerEvents(Protocol):
    """What the registration tells the host session."""

    def peer_joined(self, peer_id: str, addr: str, ice_servers: list[dict[str, Any]]) -> None: ...
    def peer_signal(self, peer_id: str, data: dict[str, Any]) -> None: ...
    def peer_relay(self, peer_id: str, text: str) -> None: ...
    def peer_left(self, peer_id: str) -> None: ...
    def server_lost(self) -> None: ...  # and with it every joiner's connection to it
    def new_session(self, old: str) -> None: ...  # the server would not give ours back
    def moved(self) -> None: ...  # the session is on another server of the cluster now
    def notify(self, text: str) -> None: ...
    def announce(self, *lines: str) -> None: ...


class Registration:
    def __init__(self, opts: HostOptions, events: ServerEvents) -> None:
        self.opts = opts
        self._events = events
        self.session_id = ""
        self._reclaim = ""
        self.ice_servers: list[dict[str, Any]] = []
        self.sig: SignalingClient | None = None
        self.server_url = ""  # the one we use
        self.public_url = ""  # the one joiners are told
        self._servers: list[str] = []
        self._runner: Any = None  # the embedded server's
        self._backoff = Backoff(RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY)

    async def prepare(self) -> None:
        """The servers to try: the embedded one, started now, or those of --server."""
        if self.opts.server is None:
            await self._start_embedded_server()
            self._servers = [self.server_url]
        else:
            # Several URLs (comma-separated) are tried in turn: instances of one cluster.
            urls = [u for u in self.opts.server.split(",") if u.strip()]
            self._servers = [SignalingClient(u).url for u in urls]
            self.server_url = self.public_url = self._servers[0]

    async def _start_embedded_server(self) -> None:
        from ..server.app import SignalServer, start_server

        server = SignalServer(ice_servers=[{"urls": [u]} for u in self.opts.ice_servers])
        try:
            self._runner, port = await start_server(self.opts.bind, self.opts.port, server)
        except OSError as exc:
            raise BeachError(
                f"cannot start the embedded server on port {self.opts.port}: {exc.strerror} "
                "(choose another with --port, or use --server)"
            ) from exc
        dial, advertise = embedded_addresses(self.opts.bind, self.opts.advertise)
        self.server_url = f"ws://{url_host(dial)}:{port}/ws"
        self.public_url = f"ws://{url_host(advertise)}:{port}/ws"

    async def close(self) -> None:
        if self.sig is not None:
            await self.sig.close()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 2.0)

    # -- registering -----------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Connect and register with the first server that answers, starting with the one
        used last; True if the session is a new one (see `_register`)."""
        start = self._servers.index(self.server_url) if self.server_url in self._servers else 0
        order = self._servers[start:] + self._servers[:start]
        error: BeachError | None = None
        for url in order:
            sig = self.sig = SignalingClient(url)
            try:
                await sig.connect(self.opts.connect_timeout)
                fresh = await self._register(sig)
            except ServerUnreachable as exc:
                error = exc
                await sig.close()
                continue
            except BeachError:
                await sig.close()
                raise
            if self.opts.server is not None and url != self.server_url:
                self.server_url = self.public_url = url
                if not fresh:
                    self._events.moved()  # joiners should now use this server
            return fresh
        assert error is not None
        raise error

    async def _register(self, sig: SignalingClient) -> bool:
        """Reclaim our session on `sig`, or register one; True if the session is new (its
        tokens are not the ones printed before). A server that will not give the session back
        (it restarted and cannot verify us) gets a new registration on the same connection."""
        if self.session_id:
            try:
                await self._ask_host(sig, self.session_id, self._reclaim)
                return False
            except Refusal as exc:
                if exc.code != E_UNKNOWN_SESSION:
                    raise
                log.warning("the server will not give session %s back: %s", self.session_id, exc)
        await self._ask_host(sig, None, None)
        return True

    async def _ask_host(
        self, sig: SignalingClient, session: str | None, reclaim: str | None
    ) -> None:
        """Send `host` and wait for the `registered` or `error` that answers it: other messages
        (a hostile or confused server may send any) are skipped, within one deadline."""
        await sig.send("host", session=session, reclaim=reclaim or None)
        msg = await self._answer(sig, time.monotonic() + self.opts.connect_timeout)
        if session is not None and msg["session"] != session:
            raise ProtocolError(
                f"the server answered our reclaim of {session} for session {msg['session']}"
            )
        self.session_id, self._reclaim = msg["session"], msg["reclaim"]
        self.ice_servers = merge(self.opts.ice_servers, msg.get("ice_servers", sig.ice_servers))

    async def _answer(self, sig: SignalingClient, deadline: float) -> dict[str, Any]:
        """The server's `registered`, before `deadline`; its `error` is a Refusal."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerUnreachable("the server did not answer our registration in time")
            try:
                msg = await sig.recv(left)
            except TimeoutError as exc:
                raise ServerUnreachable("the server did not answer our registration") from exc
            except ProtocolError as exc:
                log.warning("ignoring a message from the server: %s", exc)
                continue
            if msg["type"] == "error":
                raise Refusal(msg["code"], printable(msg["message"]))
            if msg["type"] == "registered":
                return msg
            log.info("skipping %s while waiting for our registration", msg["type"])

    # -- the server's messages -----------------------------------------------------------------

    async def run(self) -> None:
        """Hand the server's messages to the session; reconnect whenever the connection ends."""
        while True:
            try:
                await self._listen()
            except ServerUnreachable:
                self._events.server_lost()
                self._events.notify("lost the server; reconnecting (direct joiners stay connected)")
            await self._reconnect()

    async def _listen(self) -> None:
        assert self.sig is not None
        while True:
            try:
                msg = await self.sig.recv()
            except ProtocolError as exc:  # one bad message is no reason to stop
                log.warning("ignoring a message from the server: %s", exc)
                continue
            self._dispatch(msg)
            self._backoff.reset()  # the server works: a later drop starts from the first delay

    def _dispatch(self, msg: dict[str, Any]) -> None:
        mtype = msg["type"]
        events = self._events
        if mtype == "peer_joined":
            ice = merge(self.opts.ice_servers, msg.get("ice_servers", self.ice_servers))
            # The address is the server's word: shown to the host, so made printable here.
            events.peer_joined(msg["peer"], printable(msg.get("addr", ""), 64), ice)
        elif mtype == "signal":
            events.peer_signal(msg["from"], msg["data"])
        elif mtype == "peer_left":
            events.peer_left(msg["peer"])
        elif mtype == "relay":
            events.peer_relay(msg["from"], msg["data"])
        elif mtype == "joins_refused":
            # The server turned joins away before they reached us (its budgets, unknown ids).
            what = "too many join attempts" if msg["code"] == E_RATE_LIMITED else msg["code"]
            events.notify(
                f"the server turned away {msg['count']} join attempt(s): {printable(what, 32)}"
            )
        elif mtype == "error":
            log.warning("server: %s: %s", printable(msg["code"], 32), printable(msg["message"]))

    async def _reconnect(self) -> None:
        """Reconnect with backoff and reclaim the same session; if the server will not give it
        back, the session hears of the new one. The delay grows on: a connection that drops
        again before any message (a flapping server) waits longer."""
        shown: str | None = None  # the refusal last shown in the terminal
        old = self.session_id
        while True:
            await asyncio.sleep(self._backoff.delay)
            try:
                if self.sig is not None:
                    await self.sig.close()
                fresh = await self.connect()
            except ServerUnreachable as exc:
                self._backoff.next()
                log.info("reconnect failed: %s; again in %.0f s", exc, self._backoff.delay)
                self._events.notify(
                    f"cannot reach the server; trying again in {self._backoff.delay:.0f} s"
                )
                continue
            except BeachError as exc:
                shown = self._refused(exc, shown)
                continue
            if fresh:
                self._events.new_session(old)
            else:
                self._events.notify(f"reconnected to the server {short_url(self.server_url)}")
            self._backoff.next()
            return

    def _refused(self, exc: BeachError, shown: str | None) -> str:
        """The server answered, and said no (full, too many sessions from this address, an
        answer that does not fit): asking again at once would not change that. Returns the
        refusal now shown in the terminal."""
        self._backoff.next(REFUSED_MAX_DELAY)
        self._backoff.at_least(RECONNECT_MAX_DELAY)
        log.warning("reconnect refused: %s; again in %.0f s", exc, self._backoff.delay)
        if exc.message == shown:
            self._events.notify(f"server still refuses: {exc.message}")
        else:
            self._events.announce(
                f"beach: {exc.message}; live joiners stay connected, new ones cannot "
                f"join; trying again every {REFUSED_MAX_DELAY:.0f} s or sooner"
            )
        return exc.message

    # -- on behalf of joiners ------------------------------------------------------------------

    async def signal(self, peer_id: str, data: dict[str, Any]) -> None:
        if self.sig is None or self.sig.closed:
            raise NotSent("not connected to the server")
        await self.sig.send("signal", to=peer_id, data=data)

    async def relay(self, peer_id: str, text: str) -> None:
        if self.sig is None or self.sig.closed:
            raise NotSent("not connected to the server")
        await self.sig.send("relay", to=peer_id, data=text)

    async def drop(self, peer_id: str, reason: str) -> None:
        if self.sig is not None and not self.sig.closed:
            await self.sig.send("drop", peer=peer_id, reason=reason[:200])
