"""`beach host`: a shell on a PTY, the host's own terminal in raw passthrough (or, headless, no
terminal at all), and a fan-out of the PTY's output to every joiner over its own data channel.

The server is host/registration.py's business and each joiner host/joiner.py's; this module is
the hot path between the PTY, the host's terminal and the joiners, and the notices that keep
the host informed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from ..durations import session_limits
from ..invite import join_link
from ..keys import ROLES, Token
from ..link.loader import load_rtc
from ..qr import qr_lines
from ..rendezvous import short_url
from ..resume import ResumeTable
from ..screen.history import RESET, ScreenHistory
from ..screen.status_line import PRIME as STATUS_PRIME
from ..screen.status_line import StatusLine
from ..terminal import ASK_CURSOR, CURSOR_REPORT, LocalTerminal
from ..text import printable
from ..wire.compression import Encoder
from ..wire.frames import ExitStatus
from ..wire.ids import random_code
from .approval import ApprovalPrompt
from .contract import PeerInfo
from .guesses import GuessGate
from .joiner import Joiner
from .lifetime import CONTINUE_ENV, Ending, Lifetime
from .options import HostOptions
from .pty import PtyProcess
from .recorder import Recorder
from .registration import Registration

if TYPE_CHECKING:
    from ..identity.allowed import AllowedKeys

log = logging.getLogger("beach.host")

# Pause reading the PTY while the host's own terminal has this much unwritten: the host's
# terminal paces the program, exactly as without beach.
LOCAL_HIGH_WATER = 1024 * 1024
CURSOR_WAIT = 2.0  # s for the terminal to say where its cursor is, at the start
NOTICE_QUIET = 0.15  # show a notice only after output has paused this long
ROLE_NAMES = {"rw": "read-write", "view": "view-only"}
APPROVAL_TIMEOUT = 120.0  # an unanswered question is a no
KILL_AFTER = 5.0  # a shell the host ends has this long after SIGHUP before SIGKILL
# A headless host's stdout holds at most this much unwritten (a pipe nobody reads): further
# lines are dropped, never queued without bound, and never pause the shared program.
SAY_LIMIT = 256 * 1024


class HostSession:
    def __init__(self, opts: HostOptions, terminal: LocalTerminal) -> None:
        self.opts = opts
        self.term = terminal
        # Headless: no terminal of our own. The shared program is drawn nowhere, nothing is
        # read from stdin, and stdout gets plain lines: the join information once, then notices.
        self.headless = opts.headless
        self.console = Console(stderr=True, highlight=False)
        # BEACH_SCREEN_STATE=off turns the late-joiner state off (for benchmarks only).
        self.screen: ScreenHistory | None = (
            None if os.environ.get("BEACH_SCREEN_STATE") == "off" else ScreenHistory()
        )
        self.peers: dict[str, Joiner] = {}
        # Writes to the PTY by each writer ("host", or a joiner's id), for predictive echo: a
        # joiner's guesses are void once someone else typed.
        self._writes: dict[str, int] = {}
        self._write_total = 0
        self._secret = False  # the PTY reads a password (as last told to echoing joiners)
        self.registration = Registration(opts, self)
        self._secrets: dict[str, str] = {}
        self.guesses = {role: GuessGate(role, self._wrong_guess) for role in ROLES}
        self.pty: PtyProcess | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._notice: str | None = None
        self._announce: list[str] = []
        self._notice_timer: asyncio.TimerHandle | None = None
        # Notices across the bottom row of the host's own terminal, put back cell for cell.
        self.status = StatusLine(self.term.write, self._status_replay)
        self._started_at: tuple[int, int] | None = None  # the cursor when the shell started
        self._cursor_asked: float | None = None  # when we asked the terminal where it is
        # Lines of output still to come before the host's terminal shows only what the PTY
        # wrote (announcements went between): no notice line until then.
        self._blind_lines = 0
        self._paused = False
        self.accepting = True
        self.allowed_keys: AllowedKeys | None = None  # --authorized-keys/--github-user, at start
        self.resumes = ResumeTable()
        self.encoder = Encoder()
        self.recorder: Recorder | None = None
        self.prompt = ApprovalPrompt(terminal, self._redraw, lambda: self.alt_active)
        self.lifetime = Lifetime(opts, self._anyone_here)
        self._continue_dir: str | None = None
        self._unsaid = 0  # lines a headless host's stdout had no room for

    # -- the session's name and tokens -----------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.registration.session_id

    def secret(self, role: str) -> str:
        return self._secrets[role]

    def token(self, role: str) -> Token:
        return Token(self.session_id, role, self._secrets[role])  # type: ignore[arg-type]

    def join_command(self, role: str) -> list[str]:
        server = short_url(self.registration.public_url)
        return ["beach", "join", "--server", server, str(self.token(role))]

    def join_link(self, role: str) -> str:
        """For a browser, and for `beach join LINK`: the server and the token in one."""
        return join_link(self.registration.public_url, str(self.token(role)), self.opts.web_origin)

    def _how_to_join(self) -> list[tuple[str, str]]:
        """What to share, link first: (label, text) per line."""
        return [
            ("open to join (read-write): ", self.join_link("rw")),
            ("open to watch (view-only): ", self.join_link("view")),
            ("or from a terminal:        ", " ".join(self.join_command("rw"))),
            ("                           ", " ".join(self.join_command("view"))),
        ]

    def _new_secrets(self) -> None:
        n = self.opts.secret_length
        self._secrets = {"rw": random_code(n), "view": random_code(n)}

    def _write_info(self) -> None:
        if self.opts.info_file is None:
            return
        info = {
            "session": self.session_id,
            "server": self.registration.public_url,
            "join_token": str(self.token("rw")),
            "join_command": self.join_command("rw"),
            "join_link": self.join_link("rw"),
            "view_token": str(self.token("view")),
            "view_join_command": self.join_command("view"),
            "view_link": self.join_link("view"),
            "pid": os.getpid(),
        }
        path = self.opts.info_file
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a file

    def _banner(self) -> None:
        if self.headless:
            self._headless_banner()
            return
        c = self.console
        c.print(f"[bold]beach[/] sharing session [bold cyan]{self.session_id}[/]")
        for i, (label, text) in enumerate(self._how_to_join()):
            style = "bold green" if i == 0 else "green"
            # Never wrapped: a link cut across lines could not be clicked or copied whole.
            c.print(f"  {label} [{style}]{escape(text)}[/]", soft_wrap=True)
        if admits := self._admits():
            c.print(f"  {escape(admits)}", style="yellow")
        if self.opts.qr:  # before raw mode: plain newlines; escapes of our own, not rich's
            c.file.write("".join(f"  {line}\n" for line in qr_lines(self.join_link("rw"))))
            c.file.flush()
        c.print("  the shell starts below; exit it to end the session", style="dim")

    def _admits(self) -> str:
        """Who may join besides the token's holders, when keys are asked for."""
        if self.allowed_keys is None:
            return ""
        o = self.opts
        where = [str(p) for p in o.authorized_keys] + [f"github:{n}" for n in o.github_users]
        n = len(self.allowed_keys)
        return (
            f"only holders of {'this SSH key' if n == 1 else f'these {n} SSH keys'} may join "
            f"({', '.join(where)}); a browser cannot"
        )

    def _headless_banner(self) -> None:
        """The join information, once, as plain lines on stdout (a CI log, a journal, a file):
        no colour, no escape sequence, and never again (new tokens are news: `announce`)."""
        o = self.opts
        cols, rows = o.headless_size
        follows = (
            "until a read-write joiner's window sizes it"
            if o.size_mode == "smallest"
            else "whatever the joiners' windows"
        )
        lines = [f"beach sharing session {self.session_id} (headless: {cols}x{rows} {follows})"]
        lines += [f"  {label} {text}" for label, text in self._how_to_join()]
        if admits := self._admits():
            lines.append(f"  {admits}")
        if o.qr:  # no colour in a log: light modules drawn, for a dark background
            lines += [f"  {line}" for line in qr_lines(self.join_link("rw"), colour=False)]
        limits = session_limits(o.wait_for_joiner, o.max_duration, o.exit_when_last_leaves)
        if limits:
            lines.append(f"  the session ends {', '.join(limits)}")
        lines.append(
            "  inside the shared shell, `beach continue` (or creating $BEACH_CONTINUE_FILE) "
            "ends the session with exit code 0"
        )
        self._say(*lines)

    def _say(self, *lines: str) -> None:
        """Plain lines on a headless host's stdout, never blocking the loop."""
        if self.term.pending > SAY_LIMIT:
            if not self._unsaid:
                log.warning("stdout is not being read: dropping the host's notices")
            self._unsaid += len(lines)
            return
        self.term.write("".join(printable(line, 1000) + "\n" for line in lines).encode())

    # -- main ------------------------------------------------------------------------------------

    async def run(self) -> Ending:
        """Share until the shell ends, or the session's lifetime does (host/lifetime.py): the
        host's exit line and code, or, for an ending that is an error, that error raised."""
        if self.opts.keys_asked:  # before registering: a key that cannot be had ends us here
            self.allowed_keys = await self._gather_keys()
        await self.registration.prepare()
        try:
            await self.registration.connect()
            self._new_secrets()
            self._write_info()
            self._banner()
            self._spawn(load_rtc())  # for the first joiner, off the loop (link/loader.py)
            ending = await self._share()
        finally:
            await self._shutdown()
        if ending.error is not None:
            raise ending.error(ending.line)
        return ending

    async def _gather_keys(self) -> AllowedKeys:
        # Imported only when asked for: asyncssh takes a quarter of a second to load.
        from ..identity.sources import gather_allowed

        o = self.opts
        keys = await gather_allowed(o.authorized_keys, o.github_users, o.keys_url)
        log.info("only holders of %d SSH keys may join", len(keys))
        return keys

    def _window(self) -> tuple[int, int]:
        """The host's own window, or what stands in for it on a headless host."""
        return self.opts.headless_size if self.headless else self.term.size()

    async def _share(self) -> Ending:
        cols, rows = self._window()
        env = dict(os.environ)
        env.setdefault("TERM", "xterm-256color")
        if env["TERM"] in ("", "dumb"):
            env["TERM"] = "xterm-256color"
        env["BEACH_SESSION"] = self.session_id
        # `beach continue` in the shared shell creates this file: the session ends, exit 0.
        self._continue_dir = tempfile.mkdtemp(prefix="beach-")
        continue_file = os.path.join(self._continue_dir, "continue")
        env[CONTINUE_ENV] = continue_file
        argv = self.opts.command or [os.environ.get("SHELL") or shutil.which("bash") or "/bin/sh"]
        if self.opts.record is not None:
            self.recorder = await Recorder.open(self.opts.record, cols, rows, argv)
        self.pty = await PtyProcess.spawn(argv, cols, rows, env)
        if not self.headless:  # headless: never raw mode, never a byte read from stdin
            self.term.enter_raw()
            self.term.on_drain(self._local_drained)
            # Where the shell's output begins (the banner is above it), for notice lines: the
            # terminal answers in its own time, but as of this point in what it was sent.
            if self.term.out_is_tty and self.term.is_tty:
                self.term.write(ASK_CURSOR)
                self._cursor_asked = time.monotonic()
            self.term.start_input(self._on_stdin, lambda: None)
            if self.term.is_tty:
                self.term.on_resize(lambda c, r: self._resized())
        self.pty.start_reading(self._on_output)
        self._spawn(self.registration.run())
        self.lifetime.start(Path(continue_file))
        return await self._until_the_end()

    async def _until_the_end(self) -> Ending:
        """The shell exits, or the lifetime ends the session first: then the joiners are told
        why (a NOTICE now, the reason in their EXIT after the output before it) and the shell
        is hung up on."""
        assert self.pty is not None and self.lifetime.ended is not None
        exited = asyncio.ensure_future(self.pty.wait())
        either: set[asyncio.Future[Any]] = {exited, self.lifetime.ended}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                status = exited.result()
                await self._finish_peers(status)
                return Ending.shell(status)
            ending = self.lifetime.ended.result()
            assert ending.reason is not None
            log.info("ending the session: %s", ending.reason)
            for peer in self.peers.values():
                if peer.state == "live":
                    peer.notice(f"beach: {ending.reason}")
            self.pty.terminate()  # SIGHUP, as a closing terminal would
            done, _ = await asyncio.wait({exited}, timeout=KILL_AFTER)
            if not done:
                log.warning("the shell outlived SIGHUP by %.0f s: killing it", KILL_AFTER)
                self.pty.kill()
                await exited
            await self._finish_peers(ExitStatus(ending.code, None, ending.reason))
            return ending
        finally:
            exited.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shutdown(self) -> None:
        try:
            await self._hang_up()
        finally:  # even if cut short: no file of ours left behind
            if self.opts.info_file is not None:
                with contextlib.suppress(OSError):
                    self.opts.info_file.unlink()
            if self._continue_dir is not None:
                shutil.rmtree(self._continue_dir, ignore_errors=True)

    async def _hang_up(self) -> None:
        self.lifetime.close()
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
        if not self.headless:
            self.term.write(self.status.close())
        await self.term.drain(1.0)
        self.term.restore()
        await self.registration.close()

    async def _finish_peers(self, status: ExitStatus) -> None:
        live = [p for p in self.peers.values() if p.state == "live"]
        for peer in live:
            peer.finish(status)
        await asyncio.gather(*(p.flushed(3.0) for p in live))

    # -- the hot path ----------------------------------------------------------------------------

    def _on_stdin(self, data: bytes) -> None:
        if self._cursor_asked is not None:
            data = self._take_cursor_report(data)
        if self.prompt.active:  # the host is answering a question, not typing to the shell
            self.prompt.key(data)
        elif self.pty is not None:
            self._wrote("host")
            self.pty.write(data)

    def _take_cursor_report(self, data: bytes) -> bytes:
        """The terminal's answer to ASK_CURSOR, taken off the host's keystrokes (waited for
        CURSOR_WAIT at most: a terminal that never answers, and typing goes through)."""
        m = CURSOR_REPORT.search(data)
        if m is not None:
            self._cursor_asked = None
            self._started_at = (max(int(m.group(1)) - 1, 0), max(int(m.group(2)) - 1, 0))
            return data[: m.start()] + data[m.end() :]
        if self._cursor_asked is not None and time.monotonic() - self._cursor_asked > CURSOR_WAIT:
            self._cursor_asked = None
        return data

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
        if self.headless:
            pass  # drawn nowhere: see `headless` in __init__ and "Headless" in architecture.md
        elif self.prompt.active:
            self.prompt.hold(data)
        else:
            self.term.write(self.status.before_output() + data)
        if self.screen is not None:
            self.screen.feed(data)
        if self._blind_lines:
            self._blind_lines = max(self._blind_lines - data.count(b"\n"), 0)
        self._check_secret()
        if self.term.pending > LOCAL_HIGH_WATER and self.pty is not None and not self.headless:
            self.pty.pause_reading()
            self._paused = True
        if self._notice is not None:
            self._schedule_notice()

    def _local_drained(self) -> None:
        if self._paused and self.pty is not None:
            self._paused = False
            self.pty.resume_reading()

    def snapshot(self, clear_scrollback: bool = True, recent: int | None = None) -> bytes:
        if self.screen is None:
            return RESET
        return self.screen.snapshot(clear_scrollback, recent)

    def _redraw(self) -> bytes:
        """The shared screen redrawn on the host's own terminal (after a question): from its
        top-left corner, as a notice line's model has it."""
        self._started_at = (0, 0)
        self._blind_lines = 0
        return self.snapshot(clear_scrollback=False)

    @property
    def alt_active(self) -> bool:
        return self.screen is not None and self.screen.alt_active

    def keystrokes(self, data: bytes, writer: str) -> None:
        """A read-write joiner's keystrokes, each byte once."""
        if self.pty is not None:
            self._wrote(writer)
            self.pty.write(data)

    # -- predictive echo (the joiners that speak "echo": host/stream.py) -------------------------

    def _wrote(self, writer: str) -> None:
        self._writes[writer] = self._writes.get(writer, 0) + 1
        self._write_total += 1

    def writes_by_others(self, writer: str) -> int:
        return self._write_total - self._writes.get(writer, 0)

    def settle_output(self) -> None:
        if self.pty is not None:
            self.pty.settle()

    def secret_input(self) -> bool:
        return self.pty is not None and self.pty.secret_input()

    def _check_secret(self) -> None:
        """A program that turns echo off prints its prompt after doing so: tell the joiners
        that predict right behind that prompt, before they guess at what is typed next."""
        echoing = [p for p in self.peers.values() if p.state == "live" and p.echoes]
        if not echoing:
            return
        secret = self.secret_input()
        if secret != self._secret:
            self._secret = secret
            for peer in echoing:
                peer.echo_state()

    # -- sizes -----------------------------------------------------------------------------------

    def _resized(self) -> None:
        """The host's window changed: its terminal reflowed what it shows, a notice line too,
        which nothing would put back (a shell redraws only its prompt on SIGWINCH): then the
        shared screen is drawn again, as after a question."""
        showing = self.status.showing
        self.status.forget()
        if showing:
            self.term.write(self._redraw())
        self.sizes_changed()

    def shared_size(self) -> tuple[int, int]:
        assert self.pty is not None
        return self.pty.cols, self.pty.rows

    def sizes_changed(self) -> None:
        """The PTY follows the smallest window among the host and read-write joiners. A headless
        host has no window: its read-write joiners' decide, and --size while there are none."""
        if self.pty is None:
            return
        cols, rows = self._window()
        if self.opts.size_mode == "smallest":
            sizes = [
                peer.size
                for peer in self.peers.values()
                if peer.state == "live" and peer.role == "rw" and peer.size
            ]
            if self.headless and sizes:  # no window of its own: the joiners' decide alone
                cols, rows = sizes[0]
            for c, r in sizes:
                cols, rows = min(cols, c), min(rows, r)
        if (cols, rows) != (self.pty.cols, self.pty.rows):
            self.pty.resize(cols, rows)
            if self.recorder is not None:
                self.recorder.resize(cols, rows)
            for peer in self.peers.values():
                peer.send_size(cols, rows)

    # -- joiners ---------------------------------------------------------------------------------

    def peer_live(self, peer: PeerInfo) -> None:
        """It has been greeted and has its first snapshot coming."""
        self.sizes_changed()
        self.lifetime.joined()
        role = "read-write" if peer.role == "rw" else "view-only"
        path = ", via the server" if peer.relayed else ""
        key = f", key {peer.key}" if peer.key else ""
        self.notify(f"{peer.label} joined ({role}{path}{key})")

    def peer_gone(self, peer: PeerInfo) -> None:
        if self.peers.get(peer.id) is peer:
            del self.peers[peer.id]
        if peer.state == "closed" and peer.was_live:
            self.notify(f"{peer.label} left")
        self.sizes_changed()
        self.lifetime.gone(peer.was_live, peer.hung_up)

    def _anyone_here(self) -> bool:
        """A joiner is in, or on its way in with a proven token."""
        return any(p.state in ("live", "connecting") for p in self.peers.values())

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

    def guess_wait(self, peer: PeerInfo, seconds: float) -> None:
        gate = self.guesses[peer.role]
        name = ROLE_NAMES[peer.role]
        why = f"{gate.next_delay():.0f} s after the last of {gate.strikes} wrong {name} tokens"
        log.info("%s attempt from %s waits %.1f s (%s)", name, peer.label, seconds, why)
        self.notify(f"{name} join attempt from {peer.label} waits {seconds:.0f} s ({why})")

    def key_refused(self, peer: PeerInfo, why: str) -> None:
        """A joiner with the right token but no allowed key: not a wrong guess (its token was
        proven), but the person hosting should know someone holds the token."""
        log.warning("join attempt from %s refused: it %s", peer.label, why)
        self.notify(f"refused {peer.label}: it {why}")

    async def approve(self, peer: PeerInfo) -> bool:
        role = ROLE_NAMES[peer.role]
        # The role is proven by the key exchange; the peer's id and address come from the server.
        # The key it proved is beach's own word (checked against the host's list), not the server's.
        key = f" with key {peer.key}" if peer.key else ""
        self.term.write(self.status.close())  # the question has the screen
        ok = await self.prompt.ask(
            f"{role} joiner{key} wants to join. Let in?",
            f"peer {peer.id}" + (f" at {peer.addr}" if peer.addr else ""),
            APPROVAL_TIMEOUT,
        )
        self.notify(f"{'let in' if ok else 'turned away'}: {peer.label} ({role})")
        return ok

    # -- the server, for joiners -----------------------------------------------------------------

    async def signal(self, peer_id: str, data: dict[str, Any]) -> None:
        await self.registration.signal(peer_id, data)

    async def relay(self, peer_id: str, text: str) -> None:
        await self.registration.relay(peer_id, text)

    async def drop(self, peer_id: str, reason: str) -> None:
        await self.registration.drop(peer_id, reason)

    # -- what the server tells us ----------------------------------------------------------------

    def peer_joined(self, peer_id: str, addr: str, ice_servers: list[dict[str, Any]]) -> None:
        if peer_id in self.peers:  # the server reuses an id: never replace a joiner
            log.warning("server: peer %s joined twice; ignoring the second", peer_id)
            return
        self.peers[peer_id] = Joiner(self, peer_id, addr, ice_servers)

    def peer_signal(self, peer_id: str, data: dict[str, Any]) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.deliver(data)

    def peer_relay(self, peer_id: str, text: str) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.relay_in(text)

    def peer_left(self, peer_id: str) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.left()

    def server_lost(self) -> None:
        """The server closed every joiner's connection with ours (telling each the host left):
        a handshake under way cannot go on, nor a link through the server."""
        for peer in list(self.peers.values()):
            peer.left()

    def new_session(self, old: str) -> None:
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
            *(f"  {label} {text}" for label, text in self._how_to_join()),
        )

    def moved(self) -> None:
        """The session is on another server of the cluster: joiners should use that one."""
        if self._secrets:  # (not at the first registration: the info is not written yet)
            self._write_info()

    # -- notices for the host ------------------------------------------------------------------

    def notify(self, text: str) -> None:
        """Show a short notice without corrupting the shared screen: in the terminal title,
        written only once the program's output has paused (never inside an escape sequence)."""
        log.info("%s", text)
        if self.headless:  # a line in the log, at once: there is no screen to keep intact
            self._say(f"{time.strftime('%H:%M:%S')} {text}")
            return
        self._notice = f"{time.strftime('%H:%M')} {text}"
        self._schedule_notice()

    def announce(self, *lines: str) -> None:
        """News the host must not miss (new tokens, a server that refuses us): lines written
        into the host's own terminal between the program's output, as well as a notice."""
        if self.headless:
            log.info("%s", lines[0])
            self._say(*lines)
            return
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
                    printable(line, 1000),
                    width,
                    subsequent_indent="    ",
                    drop_whitespace=False,
                    break_long_words=False,  # a link stays whole: the terminal wraps it
                    break_on_hyphens=False,  # (tokens have hyphens)
                )
                or [""]
            ]
            shown = b"\r\n" + "\r\n".join(r.rstrip() for r in rows).encode() + b"\r\n"
            if self.prompt.active:  # after the question, with the program's held output
                self.prompt.hold(shown)
            else:
                self.term.write(self.status.before_output() + shown)
            self._blind_lines = self.term.size()[1]  # beach's lines: the model never saw them
        if text is None or not self.term.out_is_tty:
            return
        live = sum(1 for p in self.peers.values() if p.state == "live")
        self.term.set_title(f"beach {self.session_id}: {live} joined | {text}")
        self._status_notice(f"beach: {text}")

    def _status_notice(self, text: str) -> None:
        """The notice across the bottom row too (tmux and many setups never show the title),
        when the host's window shows the whole shared screen."""
        if self.opts.quiet or self.prompt.active or self.pty is None or self._blind_lines:
            return
        (cols, rows), (pty_cols, pty_rows) = self.term.size(), (self.pty.cols, self.pty.rows)
        if cols >= pty_cols and rows >= pty_rows:
            self.status.show(text, pty_cols, pty_rows)

    def _status_replay(self, cols: int, rows: int) -> bytes | None:
        """What makes the notice line's model of the shared screen (none for a full-screen
        program: the notice goes only to the title there)."""
        if self.screen is None:
            return None
        return self.screen.model_replay(STATUS_PRIME, cols, rows, self._started_at)
