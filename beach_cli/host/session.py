"""`beach host`: a shell on a PTY, the host's own terminal in raw passthrough, and a fan-out of
the PTY's output to every joiner over its own data channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import BeachError, ProtocolError, Refused, ServerUnreachable
from ..keys import DEFAULT_SECRET_LENGTH, ROLES, Token
from ..link.ice import merge
from ..rendezvous import SignalingClient, short_url
from ..resume import ResumeTable
from ..terminal import LocalTerminal
from ..text import printable
from ..wire.compression import Encoder
from ..wire.frames import ExitStatus
from ..wire.ids import random_code
from ..wire.signaling import E_RATE_LIMITED, E_UNKNOWN_SESSION
from .approval import ApprovalPrompt
from .guesses import DEFAULT_GUESS_LIMIT, GuessGate
from .joiner import RemotePeer
from .lan import advertised_address
from .pty import PtyProcess
from .recorder import Recorder
from .screen import RESET, ScreenHistory

log = logging.getLogger("beach.host")

# Pause reading the PTY while the host's own terminal has this much unwritten: the host's
# terminal paces the program, exactly as without beach.
LOCAL_HIGH_WATER = 1024 * 1024
NOTICE_QUIET = 0.15  # show a notice only after output has paused this long
RECONNECT_MAX_DELAY = 10.0
REFUSED_MAX_DELAY = 60.0  # a server that refuses us (not a network failure) is asked less often
ROLE_NAMES = {"rw": "read-write", "view": "view-only"}
APPROVAL_TIMEOUT = 120.0  # an unanswered question is a no


class _Refusal(Refused):
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


@dataclass
class HostOptions:
    command: list[str]
    server: str | None = None
    port: int = 7777
    bind: str = "0.0.0.0"
    advertise: str | None = None
    ice_servers: list[str] = field(default_factory=list)
    info_file: Path | None = None
    secret_length: int = DEFAULT_SECRET_LENGTH
    size_mode: str = "smallest"  # or "host"
    connect_timeout: float = 20.0
    approve: bool = False  # ask the host before letting each joiner in
    record: Path | None = None  # asciicast v2 file
    on_guess_limit: str = "new-token"  # or "stop": after too many wrong tokens
    guess_limit: int = DEFAULT_GUESS_LIMIT  # wrong tokens for one role before that


class HostSession:
    def __init__(self, opts: HostOptions, terminal: LocalTerminal) -> None:
        self.opts = opts
        self.term = terminal
        self.console = Console(stderr=True, highlight=False)
        # BEACH_SCREEN_STATE=off turns the late-joiner state off (for benchmarks only).
        self.screen: ScreenHistory | None = (
            None if os.environ.get("BEACH_SCREEN_STATE") == "off" else ScreenHistory()
        )
        self.peers: dict[str, RemotePeer] = {}
        self.session_id = ""
        self._secrets: dict[str, str] = {}
        self._reclaim = ""
        self.guesses = {role: GuessGate(role, self._wrong_guess) for role in ROLES}
        self.ice_servers: list[dict[str, Any]] = []
        self.sig: SignalingClient | None = None
        self.pty: PtyProcess | None = None
        self._runner: Any = None
        self._server_url = ""
        self._servers: list[str] = []
        self._public_url = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._notice: str | None = None
        self._announce: list[str] = []
        self._notice_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self.accepting = True
        self.resumes = ResumeTable()
        self.encoder = Encoder()
        self.recorder: Recorder | None = None
        self.prompt = ApprovalPrompt(
            terminal,
            lambda: self.snapshot(clear_scrollback=False),
            lambda: self.alt_active,
        )

    # -- setup -----------------------------------------------------------------------------------

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
        self._server_url = f"ws://{url_host(dial)}:{port}/ws"
        self._public_url = f"ws://{url_host(advertise)}:{port}/ws"

    async def _register(self) -> bool:
        """Reclaim our session on `self.sig`, or register one; True if the session is new (its
        tokens are not the ones printed before). A server that will not give the session back
        (it restarted and cannot verify us) gets a new registration on the same connection."""
        if self.session_id:
            try:
                await self._ask_host(self.session_id, self._reclaim)
                return False
            except _Refusal as exc:
                if exc.code != E_UNKNOWN_SESSION:
                    raise
                log.warning("the server will not give session %s back: %s", self.session_id, exc)
        await self._ask_host(None, None)
        return True

    async def _ask_host(self, session: str | None, reclaim: str | None) -> None:
        """Send `host` and wait for the `registered` or `error` that answers it: other messages
        (a hostile or confused server may send any) are skipped, within one deadline."""
        assert self.sig is not None
        await self.sig.send("host", session=session, reclaim=reclaim or None)
        deadline = time.monotonic() + self.opts.connect_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerUnreachable("the server did not answer our registration in time")
            try:
                msg = await self.sig.recv(left)
            except TimeoutError as exc:
                raise ServerUnreachable("the server did not answer our registration") from exc
            except ProtocolError as exc:
                log.warning("ignoring a message from the server: %s", exc)
                continue
            if msg["type"] == "error":
                raise _Refusal(msg["code"], printable(msg["message"]))
            if msg["type"] == "registered":
                break
            log.info("skipping %s while waiting for our registration", msg["type"])
        if session is not None and msg["session"] != session:
            raise ProtocolError(
                f"the server answered our reclaim of {session} for session {msg['session']}"
            )
        self.session_id, self._reclaim = msg["session"], msg["reclaim"]
        self.ice_servers = merge(
            self.opts.ice_servers, msg.get("ice_servers", self.sig.ice_servers)
        )

    def secret(self, role: str) -> str:
        return self._secrets[role]

    def token(self, role: str) -> Token:
        return Token(self.session_id, role, self._secrets[role])  # type: ignore[arg-type]

    def join_command(self, role: str) -> list[str]:
        server = short_url(self._public_url)
        return ["beach", "join", "--server", server, str(self.token(role))]

    def _new_secrets(self) -> None:
        n = self.opts.secret_length
        self._secrets = {"rw": random_code(n), "view": random_code(n)}

    def _write_info(self) -> None:
        if self.opts.info_file is None:
            return
        info = {
            "session": self.session_id,
            "server": self._public_url,
            "join_token": str(self.token("rw")),
            "join_command": self.join_command("rw"),
            "view_token": str(self.token("view")),
            "view_join_command": self.join_command("view"),
            "pid": os.getpid(),
        }
        path = self.opts.info_file
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a file

    def _banner(self) -> None:
        c = self.console
        c.print(f"[bold]beach[/] sharing session [bold cyan]{self.session_id}[/]")
        c.print("  to join (read-write):  [bold green]" + " ".join(self.join_command("rw")) + "[/]")
        c.print("  to watch (view-only):  [green]" + " ".join(self.join_command("view")) + "[/]")
        c.print("  the shell starts below; exit it to end the session", style="dim")

    # -- main ------------------------------------------------------------------------------------

    async def run(self) -> ExitStatus:
        if self.opts.server is None:
            await self._start_embedded_server()
            self._servers = [self._server_url]
        else:
            # Several URLs (comma-separated) are tried in turn: instances of one cluster.
            urls = [u for u in self.opts.server.split(",") if u.strip()]
            self._servers = [SignalingClient(u).url for u in urls]
            self._server_url = self._public_url = self._servers[0]
        try:
            await self._connect_any()
            self._new_secrets()
            self._write_info()
            self._banner()
            return await self._share()
        finally:
            await self._shutdown()

    async def _share(self) -> ExitStatus:
        cols, rows = self.term.size()
        env = dict(os.environ)
        env.setdefault("TERM", "xterm-256color")
        if env["TERM"] in ("", "dumb"):
            env["TERM"] = "xterm-256color"
        env["BEACH_SESSION"] = self.session_id
        argv = self.opts.command or [os.environ.get("SHELL") or shutil.which("bash") or "/bin/sh"]
        if self.opts.record is not None:
            self.recorder = await Recorder.open(self.opts.record, cols, rows, argv)
        self.pty = await PtyProcess.spawn(argv, cols, rows, env)
        self.term.enter_raw()
        self.term.on_drain(self._local_drained)
        self.term.start_input(self._on_stdin, lambda: None)
        if self.term.is_tty:
            self.term.on_resize(lambda c, r: self.sizes_changed())
        self.pty.start_reading(self._on_output)
        self._spawn(self._signaling_loop())
        status = await self.pty.wait()
        await self._finish_peers(status)
        return status

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        # Let each joiner hang up cleanly (a prompt DTLS close tells the far side at once).
        peers = [p.task for p in self.peers.values()]
        for peer in list(self.peers.values()):
            peer.close()
        if peers:
            _, pending = await asyncio.wait(peers, timeout=3.0)
            for task in pending:
                task.cancel()
        await asyncio.gather(*self._tasks, *peers, return_exceptions=True)
        if self.pty is not None:
            self.pty.terminate()
            self.pty.close()
        if self.recorder is not None:
            await self.recorder.aclose()
        await self.term.drain(1.0)
        self.term.restore()
        if self.sig is not None:
            await self.sig.close()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 2.0)
        if self.opts.info_file is not None:
            with contextlib.suppress(OSError):
                self.opts.info_file.unlink()

    async def _finish_peers(self, status: ExitStatus) -> None:
        live = [p for p in self.peers.values() if p.state == "live"]
        for peer in live:
            peer.finish(status)
        await asyncio.gather(*(p.flushed(3.0) for p in live))

    # -- the hot path ----------------------------------------------------------------------------

    def _on_stdin(self, data: bytes) -> None:
        if self.prompt.active:  # the host is answering a question, not typing to the shell
            self.prompt.key(data)
        elif self.pty is not None:
            self.pty.write(data)

    def _on_output(self, data: bytes) -> None:
        # Joiners first: the network is the longer way, so its clock starts before ours.
        unit = None
        for peer in self.peers.values():
            if peer.state != "live":
                continue
            if peer.deflate:
                if unit is None:  # compressed once for every joiner
                    unit = self.encoder.unit(data)
                peer.output(unit, len(data))
            else:
                peer.output(data, len(data))
        if self.recorder is not None:
            self.recorder.output(data)
        if self.prompt.active:
            self.prompt.hold(data)
        else:
            self.term.write(data)
        if self.screen is not None:
            self.screen.feed(data)
        if self.term.pending > LOCAL_HIGH_WATER and self.pty is not None:
            self.pty.pause_reading()
            self._paused = True
        if self._notice is not None:
            self._schedule_notice()

    def _local_drained(self) -> None:
        if self._paused and self.pty is not None:
            self._paused = False
            self.pty.resume_reading()

    def snapshot(self, clear_scrollback: bool = True) -> bytes:
        if self.screen is None:
            return RESET
        return self.screen.snapshot(clear_scrollback)

    @property
    def alt_active(self) -> bool:
        return self.screen is not None and self.screen.alt_active

    def input_from_peer(self, peer: RemotePeer, data: bytes) -> None:
        if self.pty is not None:
            self.pty.write(data)

    # -- sizes -----------------------------------------------------------------------------------

    def sizes_changed(self) -> None:
        """The PTY follows the smallest window among the host and read-write joiners."""
        if self.pty is None:
            return
        cols, rows = self.term.size()
        if self.opts.size_mode == "smallest":
            for peer in self.peers.values():
                if peer.state == "live" and peer.role == "rw" and peer.size:
                    cols, rows = min(cols, peer.size[0]), min(rows, peer.size[1])
        if (cols, rows) != (self.pty.cols, self.pty.rows):
            self.pty.resize(cols, rows)
            if self.recorder is not None:
                self.recorder.resize(cols, rows)
            for peer in self.peers.values():
                peer.send_size(cols, rows)

    # -- joiners ---------------------------------------------------------------------------------

    def peer_live(self, peer: RemotePeer) -> None:
        assert self.pty is not None
        peer.start(self.pty.cols, self.pty.rows)
        self.sizes_changed()
        role = "read-write" if peer.role == "rw" else "view-only"
        path = ", via the server" if peer.relayed else ""
        self.notify(f"{peer.label} joined ({role}{path})")

    def peer_gone(self, peer: RemotePeer) -> None:
        if self.peers.get(peer.id) is peer:
            del self.peers[peer.id]
        if peer.state == "closed" and peer.was_live:
            self.notify(f"{peer.label} left")
        self.sizes_changed()

    def _wrong_guess(self, gate: GuessGate, who: str) -> None:
        """Runs as the wrong guess is counted, before the role's next attempt may start."""
        name = ROLE_NAMES[gate.role]
        log.warning("join attempt from %s with a wrong %s token (%d)", who, name, gate.total)
        if gate.spent >= self.opts.guess_limit and self.opts.on_guess_limit == "stop":
            self.accepting = False
            self.notify(f"{gate.spent} wrong {name} tokens: no longer accepting joiners")
        elif gate.spent >= self.opts.guess_limit:
            # This secret has had its guesses: nobody may use it any more. The other role's
            # token is untouched.
            gate.new_secret()
            self._secrets[gate.role] = random_code(self.opts.secret_length)
            self._write_info()
            self.notify(
                f"{self.opts.guess_limit} wrong {name} tokens: new {name} token "
                f"{self.token(gate.role)}"
            )
        else:
            wait = gate.next_delay()
            slow = f"; next {name} attempt waits {wait:.0f} s" if wait else ""
            self.notify(f"wrong token from {who} ({name}, {gate.total} wrong so far{slow})")

    def guess_wait(self, peer: RemotePeer, wait: float) -> None:
        gate = self.guesses[peer.role]
        name = ROLE_NAMES[peer.role]
        why = f"{gate.next_delay():.0f} s after the last of {gate.strikes} wrong {name} tokens"
        log.info("%s attempt from %s waits %.1f s (%s)", name, peer.label, wait, why)
        self.notify(f"{name} join attempt from {peer.label} waits {wait:.0f} s ({why})")

    async def approve(self, peer: RemotePeer) -> bool:
        role = ROLE_NAMES[peer.role]
        # The role is proven by the key exchange; the peer's id and address come from the server.
        ok = await self.prompt.ask(
            f"{role} joiner wants to join. Let in?",
            f"peer {peer.id}" + (f" at {peer.addr}" if peer.addr else ""),
            APPROVAL_TIMEOUT,
        )
        self.notify(f"{'let in' if ok else 'turned away'}: {peer.label} ({role})")
        return ok

    async def signal(self, peer_id: str, data: dict[str, Any]) -> None:
        if self.sig is None or self.sig.closed:
            raise ServerUnreachable("not connected to the server")
        await self.sig.send("signal", to=peer_id, data=data)

    async def relay(self, peer_id: str, text: str) -> None:
        if self.sig is None or self.sig.closed:
            raise ServerUnreachable("not connected to the server")
        await self.sig.send("relay", to=peer_id, data=text)

    async def drop(self, peer_id: str, reason: str) -> None:
        if self.sig is not None and not self.sig.closed:
            await self.sig.send("drop", peer=peer_id, reason=reason[:200])

    async def _connect_any(self) -> bool:
        """Connect and register with the first server that answers, starting with the one
        used last; True if the session is a new one (see `_register`)."""
        start = self._servers.index(self._server_url) if self._server_url in self._servers else 0
        order = self._servers[start:] + self._servers[:start]
        error: BeachError | None = None
        for url in order:
            try:
                self.sig = SignalingClient(url)
                await self.sig.connect(self.opts.connect_timeout)
                fresh = await self._register()
            except ServerUnreachable as exc:
                error = exc
                await self.sig.close()
                continue
            except BeachError:
                await self.sig.close()
                raise
            if self.opts.server is not None and url != self._server_url:
                self._server_url = self._public_url = url
                if self.session_id and self._secrets and not fresh:
                    self._write_info()  # joiners should now use this server
            return fresh
        assert error is not None
        raise error

    async def _signaling_loop(self) -> None:
        delay = 1.0
        while True:
            try:
                assert self.sig is not None
                while True:
                    try:
                        msg = await self.sig.recv()
                    except ProtocolError as exc:  # one bad message is no reason to stop
                        log.warning("ignoring a message from the server: %s", exc)
                        continue
                    self._dispatch(msg)
                    delay = 1.0
            except ServerUnreachable:
                self.notify("lost the server; live joiners stay connected, reconnecting")
            delay = await self._reconnect(delay)

    async def _reconnect(self, delay: float) -> float:
        """Reconnect with backoff and reclaim the same session, so the tokens stay valid; if
        the server will not give it back, a new session with new tokens. Returns the delay to
        start from if the connection drops again before any message (a flapping server)."""
        shown: str | None = None  # the refusal last shown in the terminal
        old = self.session_id
        while True:
            await asyncio.sleep(delay)
            try:
                if self.sig is not None:
                    await self.sig.close()
                fresh = await self._connect_any()
            except ServerUnreachable as exc:
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                log.info("reconnect failed: %s; again in %.0f s", exc, delay)
                self.notify(f"cannot reach the server; trying again in {delay:.0f} s")
                continue
            except BeachError as exc:
                # The server answered, and said no (full, too many sessions from this address,
                # an answer that does not fit): asking again at once would not change that.
                delay = min(max(delay * 2, RECONNECT_MAX_DELAY), REFUSED_MAX_DELAY)
                log.warning("reconnect refused: %s; again in %.0f s", exc, delay)
                if exc.message != shown:
                    shown = exc.message
                    self.announce(
                        f"beach: {exc.message}; live joiners stay connected, new ones cannot "
                        f"join; trying again every {REFUSED_MAX_DELAY:.0f} s or sooner"
                    )
                else:
                    self.notify(f"server still refuses: {exc.message}")
                continue
            if fresh:
                self._new_session(old)
            else:
                self.notify(f"reconnected to the server {short_url(self._server_url)}")
            return min(delay * 2, RECONNECT_MAX_DELAY)

    def _new_session(self, old: str) -> None:
        """The server would not give our session back (a restarted server cannot tell us from
        an impostor): new secrets for the new session, shown where the host will see them."""
        self._new_secrets()
        for gate in self.guesses.values():
            gate.new_secret()
        self._write_info()
        self.announce(
            f"beach: the server no longer knows session {old} (did it restart?); "
            f"sharing as session {self.session_id} now, with new tokens. Live joiners stay "
            "connected; the old tokens no longer work.",
            "  to join (read-write):  " + " ".join(self.join_command("rw")),
            "  to watch (view-only):  " + " ".join(self.join_command("view")),
        )

    def _dispatch(self, msg: dict[str, Any]) -> None:
        mtype = msg["type"]
        if mtype == "peer_joined":
            if msg["peer"] in self.peers:  # the server reuses an id: never replace a joiner
                log.warning("server: peer %s joined twice; ignoring the second", msg["peer"])
                return
            ice = merge(self.opts.ice_servers, msg.get("ice_servers", self.ice_servers))
            # The address is the server's word: shown to the host, so made printable here.
            addr = printable(msg.get("addr", ""), 64)
            self.peers[msg["peer"]] = RemotePeer(self, msg["peer"], addr, ice)
        elif mtype == "signal":
            peer = self.peers.get(msg["from"])
            if peer is None:
                return
            try:
                peer.inbox.put_nowait(msg["data"])
            except asyncio.QueueFull:
                peer.close()
        elif mtype == "peer_left":
            peer = self.peers.get(msg["peer"])
            # Once WebRTC is under way the data channel decides liveness: joiners hang up on the
            # server as soon as their channel opens.
            if peer is not None and (peer.link is None or peer.relayed):
                peer.left()
        elif mtype == "relay":
            peer = self.peers.get(msg["from"])
            if peer is not None:
                peer.relay_in(msg["data"])
        elif mtype == "joins_refused":
            # The server turned joins away before they reached us (its budgets, unknown ids).
            what = "too many join attempts" if msg["code"] == E_RATE_LIMITED else msg["code"]
            self.notify(
                f"the server turned away {msg['count']} join attempt(s): {printable(what, 32)}"
            )
        elif mtype == "error":
            log.warning("server: %s: %s", printable(msg["code"], 32), printable(msg["message"]))

    # -- notices for the host ------------------------------------------------------------------

    def notify(self, text: str) -> None:
        """Show a short notice without corrupting the shared screen: in the terminal title,
        written only once the program's output has paused (never inside an escape sequence)."""
        log.info("%s", text)
        self._notice = f"{time.strftime('%H:%M')} {text}"
        self._schedule_notice()

    def announce(self, *lines: str) -> None:
        """News the host must not miss (new tokens, a server that refuses us): lines written
        into the host's own terminal between the program's output, as well as a notice."""
        self._announce.extend(lines)
        self.notify(lines[0])

    def _schedule_notice(self) -> None:
        if self._notice_timer is not None:
            self._notice_timer.cancel()
        loop = asyncio.get_running_loop()
        self._notice_timer = loop.call_later(NOTICE_QUIET, self._show_notice)

    def _show_notice(self) -> None:
        text, self._notice = self._notice, None
        if self._announce:
            lines, self._announce = self._announce, []
            # Wrapped at word boundaries to this terminal, continuation lines indented.
            width = max(self.term.size()[0] - 1, 20)
            rows = [
                row
                for line in lines
                for row in textwrap.wrap(
                    printable(line, 1000), width, subsequent_indent="    ", drop_whitespace=False
                )
                or [""]
            ]
            shown = b"\r\n" + "\r\n".join(r.rstrip() for r in rows).encode() + b"\r\n"
            if self.prompt.active:  # after the question, with the program's held output
                self.prompt.hold(shown)
            else:
                self.term.write(shown)
        if text is None or not self.term.out_is_tty:
            return
        live = sum(1 for p in self.peers.values() if p.state == "live")
        self.term.set_title(f"beach {self.session_id}: {live} joined | {text}")
