"""`beach ssh`: start `beach host --headless` on the remote over ssh, take its join
information, and join it here in-process, as `beach join` does. ssh carries the bootstrap, the
lifeline and (with no server configured) the tunnel to the remote's embedded server; the
session itself runs peer to peer on the data channel.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BeachError, ConnectTimeout, HostGone
from ..join.session import JoinOptions, join_and_report
from ..tasks import stop
from ..terminal import LocalTerminal, eprint
from ..text import printable
from .errors import NoRemoteBeach, RemoteHostFailed, SshFailed
from .info import BadInfo, RemoteInfo, read_info
from .remote import NO_BEACH, remote_command
from .ssh import CLOSE_WAIT, FAILED_CLOSE_WAIT, SshChild, forward, ssh_argv

SSH_FAILED = 255  # ssh's own exit status when it fails (no connection, no login)
EXIT_WAIT = 5.0  # for ssh to exit once its stdout has ended without the information
# ssh ended during the session: the remote host is ending too, and its EXIT may be on its way
# to the joiner. This long for the join to end by itself before it is ended.
SSH_LOST_GRACE = 5.0
CONTROL_BASE_MAX = 56  # + "/beach-ssh-XXXXXXXX/control" + ssh's ".XXXXXXXXXXXXXXXX" < 104
HOST_END_WAIT = 10.0  # after the session: for the remote host to end by itself, and ssh
ENDED_WAIT = 2.0  # after a failed join: for ssh to end, if the remote host has ended

KEY_OPTIONS = ("--authorized-keys", "--github-user")
# `beach host` options that `beach ssh` sets itself (or that need a terminal the remote lacks).
RESERVED_HOST_OPTIONS = (
    "--advertise",
    "--approve",
    "--bind",
    "--headless",
    "--help",
    "--info-file",
    "--port",
    "--server",
    "-h",
)


@dataclass
class SshShareOptions:
    destination: str  # [user@]host, as ssh takes it
    ssh_options: list[str] = field(default_factory=list)  # passed to ssh as they are
    remote_beach: str = "beach"
    server: str | None = None  # None: the remote embeds one, reached through the tunnel
    ice_servers: list[str] = field(default_factory=list)  # the joiner's
    remote_ice_servers: list[str] = field(default_factory=list)  # given to the remote host
    host_args: list[str] = field(default_factory=list)  # more `beach host` options
    command: list[str] = field(default_factory=list)  # the remote's program; its shell if none
    # ssh's -i FILE: with --host-arg=--authorized-keys/--github-user, the key the joiner proves
    # too (else the ssh-agent's keys, as `beach join` without -i).
    identity_file: Path | None = None
    start_timeout: float = 60.0  # ssh (a password typed included) and the host's start
    connect_timeout: float = 20.0  # the join, as `beach join --timeout`


def reserved_host_arg(arg: str) -> str | None:
    """The option of `beach host` that `arg` would set and `beach ssh` owns, if any."""
    name = arg.split("=", 1)[0]
    if arg == "--" or name in RESERVED_HOST_OPTIONS:
        return name
    return None


def host_args(opts: SshShareOptions, size: tuple[int, int] | None) -> list[str]:
    """The remote `beach host`'s options: the session ends when its joiner leaves; a server
    of ours, else an embedded one on the remote's loopback only (a port of its choosing); the
    shell starts at the size of this terminal (it would follow it a moment later anyway)."""
    args = ["--exit-when-last-leaves"]
    if size is not None:
        args += ["--size", f"{size[0]}x{size[1]}"]
    if opts.server is not None:
        args += ["--server", opts.server]
    else:
        args += ["--bind", "127.0.0.1", "--port", "0"]
    for url in opts.remote_ice_servers:
        args += ["--ice-server", url]
    return [*args, *opts.host_args]


async def share(opts: SshShareOptions, terminal: LocalTerminal) -> int:
    """The whole of `beach ssh`: the join's exit code, or an error raised."""
    where = printable(opts.destination, 100)
    control_dir = None if opts.server is not None else _control_dir()
    control = Path(control_dir, "control") if control_dir else None
    term = os.environ.get("TERM", "")
    size = terminal.size() if terminal.is_tty else None
    command = remote_command(opts.remote_beach, host_args(opts, size), opts.command, term)
    ssh = SshChild(ssh_argv(opts.destination, opts.ssh_options, control, command))
    grace = FAILED_CLOSE_WAIT
    try:
        eprint(f"beach: starting `beach host` on {where} over ssh")
        await ssh.start()
        info = await _bootstrap(ssh, opts, where)
        if opts.server is not None:
            server = opts.server
        elif info.loopback_port is not None and control is not None:
            server = f"ws://127.0.0.1:{await forward(control, info.loopback_port)}/ws"
        else:  # the remote has a server of its own configuration (its BEACH_SERVER, ...)
            server = info.server
        eprint(f"beach: joining session {info.session} on {where}")
        join = JoinOptions(
            info.token,
            server,
            opts.connect_timeout,
            tuple(opts.ice_servers),
            opts.identity_file if _asks_for_keys(opts.host_args) else None,
        )
        code = await _join_while_connected(ssh, join, terminal, where)
        # The remote host ends by itself now (its shell ended, or its last joiner left): let
        # it finish its own shutdown before our end of the lifeline closes.
        await ssh.ended_within(HOST_END_WAIT)
        grace = CLOSE_WAIT
        return code
    finally:
        await ssh.close(grace)
        if control_dir is not None:
            shutil.rmtree(control_dir, ignore_errors=True)


def _asks_for_keys(args: list[str]) -> bool:
    """Whether the remote host admits only certain SSH keys: only then is a key file read
    (it may ask for its passphrase, which ssh may just have asked for too)."""
    return any(a.split("=", 1)[0] in KEY_OPTIONS for a in args)


def _control_dir() -> str:
    """A directory of our own (mode 0700) for the ssh connection's control socket. A Unix
    socket's path has room for about 100 bytes, ssh's temporary suffix included: a longer
    $TMPDIR (macOS has one) gives way to /tmp."""
    base = tempfile.gettempdir()
    return tempfile.mkdtemp(
        prefix="beach-ssh-", dir=base if len(base) <= CONTROL_BASE_MAX else "/tmp"
    )


async def _bootstrap(ssh: SshChild, opts: SshShareOptions, where: str) -> RemoteInfo:
    """The remote host's join information, or why there is none, as one line."""
    try:
        info = await asyncio.wait_for(read_info(ssh.readline), opts.start_timeout)
    except TimeoutError as exc:
        why = f" (last from ssh: {ssh.last_error()})" if ssh.last_error() else ""
        raise ConnectTimeout(
            f"no join information from {where} within {opts.start_timeout:.0f} s "
            f"(--start-timeout){why}"
        ) from exc
    except BadInfo as exc:
        raise RemoteHostFailed(
            f"beach host on {where} gave no usable join information: {exc.message}"
        ) from exc
    ssh.drain_stdout()
    if info is not None:
        return info
    # stdout ended without it: ssh, the remote shell or the remote host failed. Which one
    # is in ssh's exit status; the why in the last line it or the host wrote to stderr.
    try:
        code = await asyncio.wait_for(ssh.wait(), EXIT_WAIT)
    except TimeoutError:
        code = None
    last = ssh.last_error()
    if code == SSH_FAILED:
        raise SshFailed(f"ssh to {where} failed: {last or 'exit 255'}")
    if code == NO_BEACH:
        raise NoRemoteBeach(
            f"no `{printable(opts.remote_beach, 100)}` on {where}'s PATH; install it there or "
            "give --remote-beach PATH"
        )
    status = _status(code) if code is not None else "no exit status"
    raise RemoteHostFailed(
        f"beach host on {where} ended ({status}) before giving its join information"
        + (f": {last}" if last else "")
    )


async def _join_while_connected(
    ssh: SshChild, opts: JoinOptions, terminal: LocalTerminal, where: str
) -> int:
    """`beach join`'s session, for as long as the ssh connection lives: without it the remote
    host is ending (its lifeline is gone) and, with an embedded server, so is the tunnel."""
    said = ssh.said  # what ssh said before the session is no news about its end
    join = asyncio.create_task(join_and_report(opts, terminal))
    gone = asyncio.create_task(ssh.wait())
    try:
        await asyncio.wait({join, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not join.done():
            done, _ = await asyncio.wait({join}, timeout=SSH_LOST_GRACE)
            if not done:
                await stop(join)  # the joiner restores the terminal on its way out
                last = ssh.last_error(since=said)
                raise HostGone(
                    f"the ssh connection to {where} ended ({_status(gone.result())}"
                    + (f": {last})" if last else ")")
                )
        try:
            return join.result()
        except BeachError as exc:
            # A remote host that ended as we joined (a bad --host-arg, a command it cannot
            # run) fails the join; its own last word says why.
            if await ssh.ended_within(ENDED_WAIT) and (last := ssh.last_error(beach_only=True)):
                exc.message = f"{exc.message} ({where}: {last})"
            raise
    finally:
        await stop(join)
        await stop(gone)


def _status(code: int) -> str:
    return f"ssh killed by signal {-code}" if code < 0 else f"exit {code}"
