"""Command line: parse, resolve settings, run the session, turn errors into one line + exit code."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from . import __version__, config
from .durations import Duration, OneLineBadParameter
from .errors import BeachError

log = logging.getLogger("beach")

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _setup_logging(debug: bool, log_file: str | None, level: str | None, default: int) -> None:
    lvl = logging.DEBUG if debug else getattr(logging, (level or "").upper(), default)
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.terminator = "\r\n"  # readable even while a terminal is in raw mode
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    if not debug:  # aiortc/aioice narrate every packet at INFO
        for name in ("aiortc", "aioice", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # aiohttp logs any malformed HTTP request from anyone with a full traceback at ERROR:
        # a client's garbage is not the operator's error (--debug shows it).
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def _run(main: Callable[[], Awaitable[int]], debug: bool) -> int:
    """Run `main` on uvloop when available; map every way out to an exit code."""
    loop_factory: Any = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    terminated = False

    async def wrapper() -> int:
        nonlocal terminated
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()
            # Once: a second signal must not cut short the shutdown the first began, nor kill
            # the process after the loop has gone (it would leave files behind).
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal)
        return await main()

    try:
        with asyncio.Runner(loop_factory=loop_factory, debug=False) as runner:
            return runner.run(wrapper())
    except BeachError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"beach: {exc.message}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("beach: interrupted", err=True)
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        if terminated:
            click.echo("beach: terminated", err=True)
            return EXIT_TERMINATED
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"beach: unexpected error: {exc!r} (run with --debug for details)", err=True)
        return 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="beach")
@click.option("--debug", is_flag=True, envvar="BEACH_DEBUG", help="Verbose logs and tracebacks.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Write logs to this file.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_file: str | None, log_level: str | None) -> None:
    """Share a terminal peer-to-peer, sealed end to end even from the server."""
    ctx.obj = {"debug": debug, "log_file": log_file, "log_level": log_level}


def _settings(ctx: click.Context, default_level: int, **flags: Any) -> dict[str, Any]:
    obj = ctx.obj
    _setup_logging(obj["debug"], obj["log_file"], obj["log_level"], default_level)
    try:
        return config.load(flags)
    except BeachError as exc:
        click.echo(f"beach: {exc.message}", err=True)
        sys.exit(exc.exit_code)


@cli.command()
@click.option("--host", "bind", help="Address to listen on.  [default: 0.0.0.0]")
@click.option("--port", type=int, help="Port to listen on.  [default: 7777]")
@click.option(
    "--stun", "ice_servers", multiple=True, help="STUN URL handed to clients (repeatable)."
)
@click.option("--turn", "turn", multiple=True, help="TURN URL handed to clients (repeatable).")
@click.option(
    "--turn-secret",
    envvar="BEACH_TURN_SECRET",
    help="coturn's static-auth-secret: clients get short-lived TURN credentials.",
)
@click.option(
    "--turn-ttl",
    type=click.IntRange(60),
    default=24 * 3600,
    show_default=True,
    help="Seconds a minted TURN credential stays valid.",
)
@click.option(
    "--join-rate",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Join attempts allowed per minute from one client address (IPv6: one /64).",
)
@click.option(
    "--session-join-rate",
    type=click.IntRange(1),
    help="Join attempts allowed per minute into one session, from all addresses together.  "
    "[default: 6 x --join-rate]",
)
@click.option(
    "--host-rate",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="Sessions registered or reclaimed per minute from one client address.",
)
@click.option(
    "--failed-reclaim-rate",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Reclaims with a ticket that does not verify, per minute from one client address.",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False),
    envvar="BEACH_STATE_FILE",
    help="File holding the key that signs reclaim tickets, made on first start (mode 0600).  "
    "[default: $STATE_DIRECTORY or ~/.local/state/beach/serve-state.json]",
)
@click.option(
    "--max-peers",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Joiners allowed in one session at a time.",
)
@click.option(
    "--max-sessions-per-address",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Sessions hosted from one client address at a time.",
)
@click.option(
    "--max-message-rate",
    type=click.FloatRange(1),
    default=50.0,
    show_default=True,
    help="Messages per second per connection (bursts of twice that).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="WebSocket connections held at once.",
)
@click.option(
    "--max-connections-per-address",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="WebSocket connections held from one client address at once.",
)
@click.option(
    "--host-grace",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds a disconnected host's session is kept for it to come back.",
)
@click.option(
    "--redis",
    "redis_url",
    envvar="BEACH_REDIS",
    help="Share sessions with other `beach serve` processes through this Redis.",
)
@click.option(
    "--relay-rate",
    type=click.IntRange(128 * 1024),
    default=4 * 1024 * 1024,
    show_default=True,
    help="Bytes per second the server reads from one connection (relayed frames included); "
    "faster senders are slowed down, never cut.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.5),
    default=5.0,
    show_default=True,
    help="Seconds a new connection has to finish its WebSocket upgrade.",
)
@click.option(
    "--max-pending-per-address",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Connections one address may hold that have not finished their upgrade.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDR|CIDR",
    help="A reverse proxy whose client-address header is believed (repeatable); "
    "from anyone else the header is ignored.",
)
@click.option(
    "--proxy-header",
    type=click.Choice(["x-forwarded-for", "forwarded"], case_sensitive=False),
    default="x-forwarded-for",
    show_default=True,
    help="The header a trusted proxy puts the client's address in.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM certificate chain: serve wss:// directly (with --tls-key).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    bind: str | None,
    port: int | None,
    ice_servers: tuple[str, ...],
    turn: tuple[str, ...],
    turn_secret: str | None,
    turn_ttl: int,
    join_rate: int,
    session_join_rate: int | None,
    host_rate: int,
    failed_reclaim_rate: int,
    state_file: str | None,
    max_peers: int,
    max_sessions_per_address: int,
    max_message_rate: float,
    max_connections: int,
    max_connections_per_address: int,
    host_grace: float,
    redis_url: str | None,
    relay_rate: int,
    header_timeout: float,
    max_pending_per_address: int,
    trusted_proxies: tuple[str, ...],
    proxy_header: str,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run the rendezvous server that hosts and joiners meet through."""
    s = _settings(ctx, logging.INFO, bind=bind, port=port, ice_servers=ice_servers)

    async def main() -> int:
        from .server.app import ServerLimits, SignalServer, start_server
        from .server.edge import EdgeLimits, parse_networks, tls_context
        from .server.turn import IceConfig

        limits = ServerLimits(
            max_peers_per_session=max_peers,
            join_attempts_per_minute=join_rate,
            session_joins_per_minute=session_join_rate,
            host_attempts_per_minute=host_rate,
            failed_reclaims_per_minute=failed_reclaim_rate,
            max_sessions_per_address=max_sessions_per_address,
            messages_per_second=max_message_rate,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
            host_grace_seconds=host_grace,
            relay_bytes_per_second=relay_rate,
        )
        edge = EdgeLimits(
            header_timeout=header_timeout,
            pending_per_address=max_pending_per_address,
            trusted_proxies=parse_networks(trusted_proxies),
            proxy_header=proxy_header.lower(),
        )
        if turn and not turn_secret:
            raise BeachError("--turn needs --turn-secret (coturn's static-auth-secret)")
        if (tls_cert is None) != (tls_key is None):
            raise BeachError("--tls-cert and --tls-key go together")
        tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        ice = IceConfig(list(s["ice_servers"]), list(turn), turn_secret, turn_ttl)
        server = SignalServer(
            limits,
            ice=ice,
            redis_url=redis_url,
            reclaim_key=_reclaim_key(state_file),
            edge=edge,
            tune_gc=True,
        )
        try:
            runner, bound = await start_server(s["bind"], s["port"], server, tls)
        except OSError as exc:
            raise BeachError(f"cannot listen on {s['bind']}:{s['port']}: {exc.strerror}") from exc
        scheme = "wss" if tls else "ws"
        click.echo(f"beach serve: listening on {scheme}://{s['bind']}:{bound}/ws", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
        return 0

    sys.exit(_run(main, ctx.obj["debug"]))


def _reclaim_key(state_file: str | None) -> Any:
    """The key for reclaim tickets, from the state file. Without --state-file, a default one;
    if that cannot be used, a key in memory (said once: tickets then die with the process)."""
    from .server.tickets import ReclaimKey, StateFileError, default_state_path

    path = Path(state_file) if state_file else default_state_path()
    try:
        key = ReclaimKey.from_state_file(path)
    except StateFileError as exc:
        if state_file:
            raise
        log.warning("%s: hosts cannot reclaim their sessions after a restart", exc.message)
        return ReclaimKey()
    log.info("reclaim tickets: key in %s", path)
    return key


class _GuessLimitOption(click.Option):
    """`beach host --guess-limit`: its default and the figures in its help are host/guesses.py's,
    read only when asked for, so that `beach serve` (this module) never loads the host's code."""

    def _resolve(self) -> None:
        from .host.guesses import DEFAULT_GUESS_LIMIT, FREE_GUESSES, MAX_DELAY

        self.default = DEFAULT_GUESS_LIMIT
        self.help = (
            "Wrong tokens for one role's secret before --on-guess-limit applies (after the "
            f"first {FREE_GUESSES}, each attempt of that role waits longer, up to "
            f"{MAX_DELAY:.0f} s)."
        )

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        self._resolve()
        return super().get_default(ctx, call)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self._resolve()
        return super().get_help_record(ctx)


class _Size(click.ParamType):
    """`beach host --size`: a mode (`smallest`, `host`) or a size (`COLSxROWS`)."""

    name = "smallest|host|COLSxROWS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        if text in ("smallest", "host"):
            return text
        size = re.fullmatch(r"([0-9]{1,5})x([0-9]{1,5})", text, re.ASCII)
        if size is not None:
            cols, rows = int(size.group(1)), int(size.group(2))
            if 1 <= cols <= 10_000 and 1 <= rows <= 10_000:  # what a RESIZE frame carries
                return cols, rows
        raise OneLineBadParameter(
            f"{value!r}: expected smallest, host, or a size from 1x1 to 10000x10000 (e.g. 120x40)",
            ctx,
            param,
        )


def _sizes(
    ctx: click.Context, param: click.Parameter, values: tuple[Any, ...]
) -> tuple[str, tuple[int, int] | None]:
    """The mode and the size `--size` gave (it may be given twice, once for each)."""
    mode, size = "smallest", None
    for value in values:
        if isinstance(value, tuple):
            size = value
        else:
            mode = value
    return mode, size


def _web_origin(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise click.BadParameter("expected the page's address, e.g. https://example.com/beach/")
    return value


def _github_users(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    from .errors import KeysUnavailable
    from .identity.names import check_account

    try:
        return tuple(check_account(name) for name in value)
    except KeysUnavailable as exc:
        raise click.BadParameter(exc.message) from None


def _keys_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .errors import KeysUnavailable
    from .identity.names import check_base

    try:
        return None if value is None else check_base(value)
    except KeysUnavailable as exc:
        raise click.BadParameter(exc.message) from None


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--server",
    help="Signaling server URL, or several comma-separated (else BEACH_SERVER, "
    "else an embedded one).",
)
@click.option("--port", type=int, help="Port of the embedded server.  [default: 7777]")
@click.option("--bind", help="Address the embedded server listens on.  [default: 0.0.0.0]")
@click.option("--advertise", help="Address to print in the join command (embedded server).")
@click.option("--ice-server", "ice_servers", multiple=True, help="STUN/TURN URL (repeatable).")
@click.option(
    "--info-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write session, tokens and join commands here as JSON.",
)
@click.option("--secret-length", type=click.IntRange(4, 32), help="Characters in a token's secret.")
@click.option(
    "--size",
    "size",
    type=_Size(),
    metavar="smallest|host|COLSxROWS",
    multiple=True,
    callback=_sizes,
    help="smallest: the PTY follows the smallest read-write window (the default); host: the "
    "host's window only; COLSxROWS: the size a headless host starts with and keeps while no "
    "read-write joiner sizes it (default 120x40). Give a mode and a size as --size host "
    "--size 100x30.",
)
@click.option(
    "--headless",
    is_flag=True,
    help="No terminal of our own (CI, systemd): join information once on stdout, the shared "
    "program drawn nowhere, stdin not read. The default when stdin is not a terminal.",
)
@click.option(
    "--wait-for-joiner",
    type=Duration(),
    metavar="DURATION",
    help="End the session (exit 11) if nobody has joined within this long (90s, 10m, 1h30m).",
)
@click.option(
    "--max-duration",
    type=Duration(),
    metavar="DURATION",
    help="End the session (exit 12) after this long, telling the joiners why.",
)
@click.option(
    "--exit-when-last-leaves",
    is_flag=True,
    help="End the session (exit 0) when the last joiner leaves, once someone has joined.",
)
@click.option(
    "--web-origin",
    callback=_web_origin,
    help="Print links to a copy of the join page hosted at this URL, not the server's own.",
)
@click.option(
    "--authorized-keys",
    "authorized_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Admit only joiners holding one of these SSH keys (OpenSSH authorized_keys format; "
    "repeatable). The token is still needed.",
)
@click.option(
    "--github-user",
    "github_users",
    multiple=True,
    callback=_github_users,
    metavar="NAME",
    help="Admit only joiners holding one of the SSH keys NAME publishes on GitHub "
    "(repeatable; with --authorized-keys, either).",
)
@click.option(
    "--keys-url",
    envvar="BEACH_KEYS_URL",
    callback=_keys_url,
    metavar="URL",
    help="Where --github-user's keys are published, as URL/NAME.keys "
    "(else BEACH_KEYS_URL, else https://github.com).",
)
@click.option(
    "--qr", is_flag=True, help="Also print the read-write link as a QR code, to join from a phone."
)
@click.option("--approve", is_flag=True, help="Ask before letting each joiner in.")
@click.option(
    "--quiet",
    is_flag=True,
    help="No notices across the bottom row of your terminal (who joined, left or guessed "
    "wrong); the window title still says.",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record the session to this file (asciicast v2, plays with asciinema).",
)
@click.option(
    "--on-guess-limit",
    type=click.Choice(["new-token", "stop"]),
    default="new-token",
    show_default=True,
    help="After --guess-limit wrong tokens for a role: a new token for it, or stop accepting.",
)
@click.option(
    "--guess-limit", cls=_GuessLimitOption, type=click.IntRange(1, 1000), show_default=True
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def host(
    ctx: click.Context,
    command: tuple[str, ...],
    info_file: Path | None,
    size: tuple[str, tuple[int, int] | None],
    headless: bool,
    wait_for_joiner: float | None,
    max_duration: float | None,
    exit_when_last_leaves: bool,
    advertise: str | None,
    approve: bool,
    on_guess_limit: str,
    guess_limit: int,
    record: Path | None,
    web_origin: str | None,
    authorized_keys: tuple[Path, ...],
    github_users: tuple[str, ...],
    keys_url: str | None,
    qr: bool,
    quiet: bool,
    **flags: Any,
) -> None:
    """Share your shell (or `-- CMD ARGS...`) and print how to join.

    Inside the shared shell, `beach continue` ends the session with exit code 0."""
    from .host.options import HEADLESS_SIZE, HostOptions
    from .host.session import HostSession
    from .identity.names import DEFAULT_KEYS_URL
    from .terminal import LocalTerminal

    s = _settings(ctx, logging.ERROR, **flags)
    terminal = LocalTerminal()
    headless = headless or not terminal.is_tty
    size_mode, headless_size = size
    if approve and (headless or not terminal.is_tty):
        click.echo("beach: --approve needs a terminal to ask you in", err=True)
        sys.exit(2)
    if headless:
        for handler in logging.getLogger().handlers:  # no raw mode to write CR LF for
            if type(handler) is logging.StreamHandler:
                handler.terminator = "\n"
    elif headless_size is not None:
        click.echo(
            f"beach: --size {headless_size[0]}x{headless_size[1]} is for a host without a "
            "terminal (--headless); this one follows its terminal's window",
            err=True,
        )
    opts = HostOptions(
        command=list(command),
        server=s["server"],
        port=s["port"],
        bind=s["bind"],
        advertise=advertise,
        ice_servers=s["ice_servers"],
        info_file=info_file,
        secret_length=s["secret_length"],
        size_mode=size_mode,
        headless=headless,
        headless_size=headless_size or HEADLESS_SIZE,
        wait_for_joiner=wait_for_joiner,
        max_duration=max_duration,
        exit_when_last_leaves=exit_when_last_leaves,
        connect_timeout=s["connect_timeout"],
        approve=approve,
        on_guess_limit=on_guess_limit,
        guess_limit=guess_limit,
        record=record,
        web_origin=web_origin,
        authorized_keys=list(authorized_keys),
        github_users=list(github_users),
        keys_url=keys_url or DEFAULT_KEYS_URL,
        qr=qr,
        quiet=quiet,
    )

    async def main() -> int:
        ending = await HostSession(opts, terminal).run()
        click.echo(f"beach: {ending.line}", err=True)
        return ending.code

    sys.exit(_run(main, ctx.obj["debug"]))


@cli.command()
@click.option("--server", help="Signaling server URL (not needed with a link).")
@click.option("--ice-server", "ice_servers", multiple=True, help="STUN/TURN URL (repeatable).")
@click.option("--timeout", "connect_timeout", type=float, help="Seconds to wait for a connection.")
@click.option(
    "-i",
    "--identity",
    "identity_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The SSH key to prove when the host admits only certain keys (a private key file, "
    "or a .pub naming a key in your ssh-agent); else the ssh-agent's keys.",
)
@click.option(
    "--predict",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Show typed characters before the host echoes them: on links slower than about "
    "60 ms round trip (auto), always, or never.",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No line across the screen saying how you are connected; the window title still says.",
)
@click.argument("token", metavar="LINK|TOKEN")
@click.pass_context
def join(
    ctx: click.Context,
    token: str,
    identity_file: Path | None,
    predict: str,
    quiet: bool,
    **flags: Any,
) -> None:
    """Attach to a shared terminal: the link `beach host` printed, or its token with --server.
    Detach with Ctrl-] then d."""
    from .invite import BadLink, is_link, parse_link
    from .join.session import JoinOptions, join_and_report
    from .terminal import LocalTerminal

    s = _settings(ctx, logging.ERROR, **flags)
    if is_link(token):
        try:
            linked, token = parse_link(token)
        except BadLink as exc:
            click.echo(f"beach: {exc.message}", err=True)
            sys.exit(2)
        if flags.get("server") is None:  # the link's server, unless --server says otherwise
            s["server"] = linked
    if not s["server"]:
        from .recent import last_server
        from .rendezvous import short_url

        click.echo(
            "beach: no server given: join with the link `beach host` printed "
            "(http://HOST:PORT/j/#TOKEN), or give the token with --server URL or BEACH_SERVER",
            err=True,
        )
        last = last_server()
        if last is not None:
            click.echo(
                f"beach: your last join went through {short_url(last)}: "
                f"beach join --server {short_url(last)} {token}",
                err=True,
            )
        sys.exit(2)

    async def main() -> int:
        opts = JoinOptions(
            token,
            s["server"],
            s["connect_timeout"],
            tuple(s["ice_servers"]),
            identity_file,
            predict,
            quiet,
        )
        return await join_and_report(opts, LocalTerminal())

    sys.exit(_run(main, ctx.obj["debug"]))


@cli.command(name="ssh")
@click.option("-p", "ssh_port", metavar="PORT", help="ssh: port to connect to.")
@click.option(
    "-i",
    "identities",
    multiple=True,
    metavar="FILE",
    help="ssh: identity file (the first also proves you to a host with --authorized-keys).",
)
@click.option(
    "-o", "ssh_opts", multiple=True, metavar="OPTION", help="ssh: -o OPTION (repeatable)."
)
@click.option("-J", "jump", metavar="DEST", help="ssh: connect through this jump host.")
@click.option("-l", "login", metavar="USER", help="ssh: user to log in as.")
@click.option("-F", "ssh_config", metavar="FILE", help="ssh: configuration file.")
@click.option(
    "--remote-beach",
    default="beach",
    show_default=True,
    metavar="PATH",
    help="beach on the remote, if it is not on the remote's PATH.",
)
@click.option(
    "--host-arg",
    "host_args",
    multiple=True,
    metavar="ARG",
    help="One more word for the remote `beach host` (repeatable), e.g. "
    "--host-arg=--max-duration=1h.",
)
@click.option(
    "--server",
    help="Signaling server URL for both ends (else BEACH_SERVER, else one embedded in the "
    "remote host, reached through the ssh connection).",
)
@click.option(
    "--ice-server", "ice_servers", multiple=True, help="STUN/TURN URL for both ends (repeatable)."
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds for ssh to log in and the remote host to start.",
)
@click.option("--timeout", "connect_timeout", type=float, help="Seconds to wait for the join.")
@click.argument("destination", metavar="[USER@]HOST")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(
    ctx: click.Context,
    destination: str,
    command: tuple[str, ...],
    ssh_port: str | None,
    identities: tuple[str, ...],
    ssh_opts: tuple[str, ...],
    jump: str | None,
    login: str | None,
    ssh_config: str | None,
    remote_beach: str,
    host_args: tuple[str, ...],
    start_timeout: float,
    **flags: Any,
) -> None:
    """Share a remote machine's shell (or `-- CMD ARGS...`) over ssh and join it here: ssh
    starts `beach host` there and carries only the bootstrap. Ends when you leave (exit the
    shell, or Ctrl-] d)."""
    from .sshshare.share import SshShareOptions, reserved_host_arg, share
    from .terminal import LocalTerminal

    s = _settings(ctx, logging.ERROR, **flags)
    for arg in host_args:
        if (name := reserved_host_arg(arg)) is not None:
            raise click.UsageError(f"--host-arg {name}: beach ssh sets that itself")
    options: list[str] = [*(["-F", ssh_config] if ssh_config else [])]
    options += [*(["-l", login] if login else []), *(["-p", ssh_port] if ssh_port else [])]
    options += [w for f in identities for w in ("-i", f)]
    options += [*(["-J", jump] if jump else []), *(w for o in ssh_opts for w in ("-o", o))]
    opts = SshShareOptions(
        destination=destination,
        ssh_options=options,
        remote_beach=remote_beach,
        server=s["server"],
        ice_servers=s["ice_servers"],
        remote_ice_servers=list(flags["ice_servers"]),
        host_args=list(host_args),
        command=list(command),
        identity_file=Path(identities[0]) if identities else None,
        start_timeout=start_timeout,
        connect_timeout=s["connect_timeout"],
    )
    sys.exit(_run(lambda: share(opts, LocalTerminal()), ctx.obj["debug"]))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (commands, options, choices, files).

    \b
    bash:  eval "$(beach completion bash)"    in ~/.bashrc
    zsh:   eval "$(beach completion zsh)"     in ~/.zshrc
    fish:  beach completion fish > ~/.config/fish/completions/beach.fish"""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # the three click knows
    # The script calls `beach` back with _BEACH_COMPLETE set; click's main answers it.
    click.echo(complete(cli, {}, "beach", "_BEACH_COMPLETE").source())


@cli.command(name="continue")
def continue_() -> None:
    """Inside a shared shell: end the session and let what started `beach host` go on (a CI
    job: `beach host` exits with code 0)."""
    from .host.lifetime import CONTINUE_ENV

    path = os.environ.get(CONTINUE_ENV)
    if not path:
        click.echo(f"beach: not inside a shared shell ({CONTINUE_ENV} is not set)", err=True)
        sys.exit(2)
    try:
        Path(path).touch()
    except OSError as exc:
        click.echo(f"beach: cannot create {path}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo("beach: ending the session; what started `beach host` goes on", err=True)


def main() -> None:
    cli(prog_name="beach")
