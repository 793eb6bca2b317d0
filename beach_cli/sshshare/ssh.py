"""The system's OpenSSH client as our child: the one connection that starts the remote host,
holds its lifeline (ssh's stdin, see remote.py) and, with no server configured, the tunnel to
the remote's embedded server (a forward added through the connection's control socket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from pathlib import Path

from ..errors import BeachError
from ..tasks import stop
from ..text import printable

log = logging.getLogger("beach.ssh")

SSH = "ssh"
LINE_LIMIT = 64 * 1024  # the longest line read from ssh's stdout (info.py's lines)
STDERR_TAIL = 20  # lines of ssh's stderr kept for an error message
BEACH = "beach: "  # how the remote beach's own lines on stderr begin
# ssh's lines that say nothing about a failure (StrictHostKeyChecking=accept-new and the like)
NOT_NEWS = ("Warning: Permanently added",)
CLOSE_WAIT = 10.0  # after our end of the lifeline closes: the remote host's own shutdown
FAILED_CLOSE_WAIT = 1.0  # the same when nothing worked: a remote that may not even be beach
KILL_WAIT = 3.0
FORWARD_TIMEOUT = 15.0
FORWARD_TRIES = 3


def ssh_argv(destination: str, options: list[str], control: Path | None, command: str) -> list[str]:
    """ssh with no terminal (-T: stdin is our pipe, never a person's) and no escape character,
    the user's options, then DESTINATION COMMAND. ssh keeps the first value it is given for an
    option, so ours that must hold come before the user's."""
    argv = [SSH, "-T", "-e", "none"]
    if control is not None:  # a control socket, for the tunnel `forward` adds later
        argv += ["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-S", str(control)]
    return [*argv, *options, "--", destination, command]


def no_ssh() -> BeachError:
    return BeachError("no `ssh` program here: install OpenSSH's client (Debian: openssh-client)")


class SshChild:
    """`ssh ... DEST COMMAND`, its stdout read line by line (then drained), its stderr kept in
    a short tail. It stays in our process group, so it may ask for a password or passphrase
    on our terminal, and a Ctrl-C before the session starts reaches it as well as us."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[tuple[int, str]] = deque(maxlen=STDERR_TAIL)  # (number, line)
        self.said = 0  # lines on stderr so far
        self._tasks: list[asyncio.Task[None]] = []
        self._draining = False

    async def start(self) -> None:
        log.debug("running %s", self.argv)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
        except FileNotFoundError as exc:
            raise no_ssh() from exc
        self._tasks.append(asyncio.create_task(self._read_stderr()))

    async def readline(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        return await self.proc.stdout.readline()

    def drain_stdout(self) -> None:
        """Read the rest of stdout, unseen: ssh never blocks on it, and its end is noticed
        (asyncio's `wait` waits for that too)."""
        if not self._draining and self.proc is not None:
            self._draining = True
            self._tasks.append(asyncio.create_task(self._drain(self.proc.stdout)))

    async def _drain(self, stream: asyncio.StreamReader | None) -> None:
        while stream is not None and await stream.read(LINE_LIMIT):
            pass

    async def _read_stderr(self) -> None:
        """ssh's own messages and the remote host's stderr: logged, and the last lines kept."""
        assert self.proc is not None and self.proc.stderr is not None
        stream, partial = self.proc.stderr, b""
        while chunk := await stream.read(LINE_LIMIT):
            *lines, partial = (partial + chunk).split(b"\n")
            partial = partial[-LINE_LIMIT:]
            for raw in lines:
                self._keep(raw)
        self._keep(partial)

    def _keep(self, raw: bytes) -> None:
        line = printable(raw.decode(errors="replace").strip(), 300)
        if line:
            log.info("ssh: %s", line)
            self.said += 1
            if not line.startswith(NOT_NEWS):
                self.stderr_tail.append((self.said, line))

    def last_error(self, since: int = 0, beach_only: bool = False) -> str:
        """The last line on stderr (after the first `since`) that the remote beach wrote (its
        exit line, an error: without its "beach: "), else ssh's own last line."""
        lines = [line for n, line in self.stderr_tail if n > since]
        ours = [line.removeprefix(BEACH) for line in lines if line.startswith(BEACH)]
        return ours[-1] if ours else "" if beach_only or not lines else lines[-1]

    async def wait(self) -> int:
        """ssh's exit status (its stdout and stderr read to their end too)."""
        assert self.proc is not None
        code = await self.proc.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return code

    async def close(self, grace: float = CLOSE_WAIT) -> None:
        """Close our end of the lifeline and give the remote `grace` seconds to end its host
        and ssh to exit; then end ssh (the remote then sees the connection close: the same)."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        self.drain_stdout()
        done = await self.ended_within(grace)
        for sig in ("terminate", "kill"):
            if done:
                break
            with contextlib.suppress(ProcessLookupError):
                getattr(proc, sig)()
            done = await self.ended_within(KILL_WAIT)
        for task in self._tasks:
            await stop(task)

    async def ended_within(self, seconds: float) -> bool:
        """Whether ssh exits within `seconds` (it is left running either way)."""
        waiter = asyncio.ensure_future(self.wait())
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
        if not done:
            await stop(waiter)
        return bool(done)


def free_port() -> int:
    """A loopback port nothing listens on right now (ssh binds it a moment later; a race
    lost to another program is one more try)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def forward(control: Path, remote_port: int) -> int:
    """Ask the ssh connection behind `control` to forward a free loopback port here to
    `remote_port` on the remote's loopback; returns the local port."""
    error = ""
    for _ in range(FORWARD_TRIES):
        port = free_port()
        spec = f"127.0.0.1:{port}:127.0.0.1:{remote_port}"
        # -F /dev/null: the request goes to the control socket alone, no config involved.
        argv = [
            SSH,
            "-F",
            "/dev/null",
            "-S",
            str(control),
            "-O",
            "forward",
            "-L",
            spec,
            "beach-ssh",
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise no_ssh() from exc
        try:
            _, err = await asyncio.wait_for(proc.communicate(), FORWARD_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            error = f"no answer in {FORWARD_TIMEOUT:.0f} s"
            continue
        if proc.returncode == 0:
            log.info("forwarding 127.0.0.1:%d to the remote's port %d", port, remote_port)
            return port
        lines = err.decode(errors="replace").strip().splitlines()
        error = printable(lines[-1], 300) if lines else f"ssh exit {proc.returncode}"
    raise BeachError(f"ssh could not forward a local port to the remote's server: {error}")
