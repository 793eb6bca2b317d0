"""The host against a hostile or failing world: a server that restarts and cannot give the
session back, a server that answers registration with something else or refuses for good,
text with escape sequences from the server, a flood of wrong view-token guesses, a bind address
that is not the default, a disk that cannot keep up with --record, a command that cannot run.
Real `beach` processes on real sockets; attackers built from beach's own modules."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest
from aiohttp import web
from conftest import BEACH, Procs, free_port, shell_ready, start_host, start_join, strip_ansi
from loop_thread import LoopThread
from serve_process import ServeProcess
from test_security import EvilServer, ServerThread, Tamper, evil, kind

from beach_cli.errors import BeachError, WrongToken
from beach_cli.host.recorder import QUEUE_LIMIT, Recorder
from beach_cli.keys import KeyExchange
from beach_cli.rendezvous import SignalingClient
from beach_cli.server.app import Client, SignalServer
from beach_cli.wire.keyplane import parse_payload, payload

T = 20.0  # seconds for any one step


def tail(path: Path) -> pexpect.spawn:
    path.touch()
    return pexpect.spawn("tail", ["-F", "-n", "+1", str(path)], encoding="utf-8", timeout=T)


def read_info(path: str) -> dict:
    data = json.loads(Path(path).read_text())
    data["_path"] = path
    return data


# -- 1: a restarted server that cannot give the session back ---------------------------------


async def squat(url: str, session: str) -> bool:
    """What an impostor tries after a restart: claim the session id with a made-up reclaim
    key. True if the server let it (a server without reclaim tickets does)."""
    sig = SignalingClient(url)
    await sig.connect(T)
    try:
        await sig.send("host", session=session, reclaim="made-up-reclaim-key-0123456789")
        msg = await sig.recv(T)
        return msg["type"] == "registered"
    finally:
        await sig.close()


@pytest.mark.e2e
def test_host_that_cannot_reclaim_registers_anew_and_shows_new_tokens(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "host.log"
    watch = tail(log)
    serve = ServeProcess(
        "--host", "127.0.0.1", "--port", str(port), "--state-file", str(tmp_path / "a.json")
    )
    loop = LoopThread(60.0)
    try:
        host, info = start_host(
            procs,
            tmp_path,
            serve.url,
            global_opts=("--log-file", str(log), "--log-level", "info"),
        )
        shell_ready(host)
        live = start_join(procs, info)
        shell_ready(live)
        # Its session needs no server once it has moved off the early relay.
        watch.expect(r"moved to the data channel", timeout=T)

        serve.proc.kill()  # no goodbye: it forgets every session
        serve.stop()
        # Two failed reconnects: the next is 4 s away, time enough to restart (with another
        # key, as if its state file were lost: the host's ticket no longer verifies) and for
        # an impostor to try the id first, in vain.
        for _ in range(2):
            watch.expect(r"reconnect failed: cannot reach the server", timeout=T)
        serve = ServeProcess(
            "--host", "127.0.0.1", "--port", str(port), "--state-file", str(tmp_path / "b.json")
        )
        assert not loop.call(squat(serve.url, info["session"]))

        host.expect(r"no longer knows session \w+ \(did it restart\?\); sharing as session", T)
        # The new links first, then the commands, each with the new token.
        host.expect(r"open to join \(read-write\):\s+(http://\S+/j/#\w+-\w+)", T)
        link = host.child.match.group(1)
        host.expect(r"open to watch \(view-only\):\s+(http://\S+/j/#\w+-v-\w+)", T)
        view_link = host.child.match.group(1)
        host.expect(r"or from a terminal:\s+beach join --server \S+ (\w+-\w+)", T)
        shown = host.child.match.group(1)
        host.expect(r"beach join --server \S+ (\w+-v-\w+)", T)
        fresh = read_info(info["_path"])
        assert fresh["session"] != info["session"]
        assert fresh["join_token"] == shown and fresh["join_link"] == link
        assert fresh["view_token"] == host.child.match.group(1)
        assert fresh["view_link"] == view_link
        assert fresh["join_token"].split("-")[1] != info["join_token"].split("-")[1]

        # The joiner that was live before the restart is peer to peer: still there.
        live.send("echo still-$((40+2))\r")
        live.expect("still-42")
        host.expect("still-42")

        newcomer = start_join(procs, fresh)
        shell_ready(newcomer)
        newcomer.send("echo newcomer-$((6*7))\r")
        newcomer.expect("newcomer-42")

        old = start_join(procs, info)  # the token printed before the restart
        code = old.exit_code(timeout=T + 10)
        assert code == 5, old.output  # the old id is no session any more
        assert "$ " not in strip_ansi(old.transcript.getvalue())

        newcomer.send("exit\r")
        assert newcomer.exit_code() == 0
        assert live.exit_code() == 0
        assert host.exit_code() == 0
    finally:
        watch.close()
        loop.stop()
        serve.stop()


# -- 14 and 4: registration answered by something else, a lying answer, a lasting refusal -------

HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b]2;pwned\x07\x1b[2J"  # clipboard, title, clear screen


class StandIn:
    """A scripted signaling server. Connection 1: noise before `registered`, then a hostile
    `error` and a `joins_refused`; it hangs up when told. Connection 2: answers the reclaim for
    another session. Later ones: refuse, for good ("too many sessions")."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.hosts: list[dict[str, Any]] = []  # every `host` message, in order
        self.hang_up = asyncio.Event()
        self.conns = 0
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/ws"

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.conns += 1
        n = self.conns

        async def send(mtype: str, **fields: Any) -> None:
            await ws.send_json({"type": mtype, "v": 1, **fields})

        await send("welcome", server="stand-in", ice_servers=[])
        async for raw in ws:
            msg = json.loads(raw.data)
            if msg["type"] != "host":
                continue
            self.hosts.append(msg)
            if n == 1:
                await send("peer_left", peer="zz9zz9zz")
                await send("joins_refused", code="rate_limited", count=3)
                await send("signal", **{"from": "qq9qq9qq"}, data={"k": "probe"})
                await send("registered", session="aaaaaa", reclaim="r" * 32)
                await send("error", code="bad_message", message=f"hello {HOSTILE} there")
                await send("joins_refused", code="rate_limited", count=7)
                await self.hang_up.wait()
                await ws.close()
            elif n == 2:
                await send("registered", session="bbbbbb", reclaim="s" * 32)
            else:
                await send(
                    "error", code="too_many", message=f"too many sessions from {HOSTILE} you"
                )
        return ws

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.mark.e2e
def test_registration_takes_only_its_answer_and_a_lasting_refusal_is_shown_and_backed_off(
    procs: Procs, tmp_path: Path
) -> None:
    loop = LoopThread(60.0)
    stand_in = StandIn(loop)
    loop.call(stand_in.start())
    try:
        host, info = start_host(
            procs, tmp_path, stand_in.url, global_opts=("--log-level", "warning")
        )
        assert info["session"] == "aaaaaa"  # not "unexpected answer from the server: peer_left"
        shell_ready(host)
        host.expect("turned away 7 join attempt\\(s\\): too many join attempts")  # notice
        loop.loop.call_soon_threadsafe(stand_in.hang_up.set)

        # Connection 2 answers the reclaim of aaaaaa for bbbbbb: not taken, and said so.
        host.expect(r"answered our reclaim of aaaaaa for session bbbbbb", T)
        # Later connections refuse for good: said in the host's own terminal...
        host.expect(r"too many sessions from .* you; live joiners stay connected", T + 15)
        seen = len(stand_in.hosts)
        # ...and asked again no sooner than the backoff allows (the old loop asked every 10 s
        # at most, silently, and any answer at all was taken as the registration's).
        with pytest.raises(pexpect.TIMEOUT):
            host.expect("never printed", timeout=8)
        assert len(stand_in.hosts) <= seen + 1, stand_in.hosts
        assert all(m.get("session") == "aaaaaa" for m in stand_in.hosts[1:])

        raw = host.transcript.getvalue()
        assert "\x1b]52" not in raw and "pwned\x07" not in raw and "\x1b[2J" not in raw
        assert "hello ?]52;c;cHduZWQ=??]2;pwned??[2J there" in raw  # the logged error, made safe
        host.send("exit\r")
        assert host.exit_code() == 0
    finally:
        loop.call(stand_in.stop())
        loop.stop()


# -- 5 and 4: the approval prompt at 30 columns, with an address full of escapes --------------


class AddressForger(EvilServer):
    """Reports every joiner's address as a string of escape sequences."""

    def _on_join(self, client: Any, msg: dict[str, Any]) -> None:
        client.addr = HOSTILE
        super()._on_join(client, msg)


@pytest.mark.e2e
def test_approval_prompt_at_30_columns_shows_the_role_whole_and_no_server_escape(
    procs: Procs, tmp_path: Path
) -> None:
    st = ServerThread(AddressForger())
    try:
        cols, rows = 30, 12
        host, info = start_host(procs, tmp_path, st.url, "--approve", cols=cols, rows=rows)
        shell_ready(host)
        mark = len(host.transcript.getvalue())
        joiner = start_join(procs, info)
        joiner.expect("waiting for the host to let you in")
        host.expect("reported by the server")
        raw = host.transcript.getvalue()
        screen = pyte.Screen(cols, rows)
        pyte.ByteStream(screen).feed(raw.encode())
        lines = [line.rstrip() for line in screen.display]
        prompt = next(i for i, line in enumerate(lines) if "beach:" in line)
        assert lines[prompt] == "beach: read-write joiner", lines  # the role first, whole
        assert "Let in? [y/N]" in lines[prompt + 1], lines
        assert "at ?]52;c;cHduZ" in lines[prompt + 2], lines  # printable, after the role
        assert "(as reported by the server)" in " ".join(lines), lines
        shown = raw[mark:]
        assert "\x1b]52" not in shown and "\x1b]2;pwned" not in shown
        host.send("n")
        joiner.expect("the host did not let you in")
        assert joiner.exit_code() == 7
        host.expect("turned away")  # the notice (the window title), made safe too
        assert "\x1b]2;pwned" not in host.transcript.getvalue()
        host.send("exit\r")
        assert host.exit_code() == 0
    finally:
        st.stop()


# -- 6: wrong view-token guesses: growing delays, only the view token rotates ------------------


async def wrong_guess(url: str, session: str, role: str, secret: str) -> str:
    """One online guess, made as a joiner would: True if the host confirmed it."""
    sig = SignalingClient(url)
    await sig.connect(T)
    try:
        await sig.send("join", session=session)
        joined = await sig.recv(T)
        assert joined["type"] == "joined", joined
        kx = KeyExchange("joiner", session, joined["peer"], role, secret)  # type: ignore[arg-type]
        await sig.send("signal", to="host", data=kx.start())
        while True:
            msg = await sig.recv(90)  # the host may keep us waiting for our turn
            if msg["type"] != "signal":
                continue
            data = parse_payload(msg["data"])
            if data["k"] == "pake":
                kx.finish(data)
            elif data["k"] == "confirm":
                try:
                    kx.verify(data)
                except WrongToken:
                    await sig.send(
                        "signal", to="host", data=payload("reject", reason="wrong token")
                    )
                    return "wrong"
                return "right"
            elif data["k"] == "reject":
                return "rejected: " + data["reason"]
    finally:
        await sig.close()


@pytest.mark.e2e
def test_view_token_guesses_wait_longer_each_time_and_rotate_only_the_view_token(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    log = tmp_path / "host.log"
    watch = tail(log)
    loop = LoopThread(60.0)
    try:
        host, info = start_host(
            procs,
            tmp_path,
            server,
            "--guess-limit",
            "5",
            global_opts=("--log-file", str(log), "--log-level", "info"),
        )
        shell_ready(host)

        async def burst() -> list[str]:
            return await asyncio.gather(
                *(wrong_guess(server, info["session"], "view", "zzzzzz") for _ in range(5))
            )

        assert loop.call(burst(), timeout=90) == ["wrong"] * 5
        watch.expect("new view-only token")
        fresh = read_info(info["_path"])
        assert fresh["view_token"] != info["view_token"]
        assert fresh["join_token"] == info["join_token"]  # view guesses never rotate rw
        text = log.read_text()
        delays = re.findall(r"view-only attempt from .* waits [\d.]+ s \((\d+) s after", text)
        assert delays == ["1", "2"], text  # three free guesses, then 1 s, 2 s: one at a time

        writer = start_join(procs, info)  # the read-write token: untouched and not slowed
        shell_ready(writer)
        viewer = start_join(procs, fresh, key="view_join_command")
        shell_ready(viewer)
        text = log.read_text()
        assert "read-write attempt" not in text, text
        # The right token waited out what was left of the 4 s the fifth wrong guess earned.
        assert re.search(r"view-only attempt from .* \(4 s after the last of 5 wrong", text)
        stale = start_join(procs, info, key="view_join_command")  # before the rotation
        stale.expect("the join token is wrong", timeout=T + 10)
        assert stale.exit_code() == 6
        writer.send("exit\r")
        for p in (writer, viewer, host):
            assert p.exit_code() == 0
    finally:
        watch.close()
        loop.stop()


@pytest.mark.e2e
def test_a_right_token_waits_out_the_guess_delay_past_its_own_timeout(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    """The host tells a held attempt how long it waits ("hold"), so a joiner whose --timeout
    is shorter than the delay wrong tokens earned still gets in, and says why it waits."""
    loop = LoopThread(60.0)
    try:
        host, info = start_host(procs, tmp_path, server, "--guess-limit", "20")
        shell_ready(host)

        async def burst() -> list[str]:
            return await asyncio.gather(
                *(wrong_guess(server, info["session"], "rw", "zzzzzz") for _ in range(5))
            )

        assert loop.call(burst(), timeout=90) == ["wrong"] * 5
        # Five wrong guesses: the next read-write attempt waits 4 s, twice the joiner's timeout.
        argv = list(info["join_command"])
        joiner = procs.start([BEACH, *argv[1:-1], "--timeout", "2", argv[-1]])
        joiner.expect("slowing joins after wrong tokens")
        shell_ready(joiner)
        joiner.send("exit\r")
        assert joiner.exit_code() == 0
        assert host.exit_code() == 0
    finally:
        loop.stop()


# -- a server that drops the host in the middle of a join ---------------------------------------


def drop_host_on(what: str, deliver: bool) -> Tamper:
    """A tamper hook: at the joiner's first `what` signal the server hangs up on the host
    (once), after delivering that signal to it if `deliver`, else swallowing it."""

    def hook(srv: EvilServer, client: Client, msg: dict[str, Any]) -> Any:
        if client.peer_id is not None and kind(msg) == what and not srv.state.get("dropped"):
            srv.state["dropped"] = True
            if deliver:
                SignalServer._on_signal(srv, client, msg)
            assert client.session is not None and client.session.host is not None
            client.session.host.close_after_flush()
            return None
        return msg

    return hook


def join_across_a_drop(
    procs: Procs, tmp_path: Path, hook: Tamper, *host_args: str
) -> tuple[str, str]:
    """A host on a server that drops it as `hook` says: the first joiner is cut off (one
    line, exit 8), the host reconnects, and a second joiner with the same token gets the
    shell and leaves, then the host exits. The host's log, and what its terminal showed."""
    log = tmp_path / "host.log"
    with evil(hook) as st:
        host, info = start_host(
            procs,
            tmp_path,
            st.url,
            *host_args,
            global_opts=("--log-file", str(log), "--log-level", "info"),
        )
        shell_ready(host)
        first = start_join(procs, info)
        first.expect("the host left before we could connect", timeout=T)
        assert first.exit_code() == 8
        assert "Traceback" not in first.transcript.getvalue()
        host.expect("reconnected to the server", timeout=T)
        assert st.server.state.get("dropped")

        second = start_join(procs, info)  # the same token, which still works
        shell_ready(second)
        second.send("echo still-$((6*7))\r")
        second.expect("still-42")
        second.send("exit\r")
        assert second.exit_code() == 0
        assert host.exit_code() == 0
        return log.read_text(), strip_ansi(host.transcript.getvalue())


@pytest.mark.e2e
def test_a_join_cut_short_by_the_server_is_no_wrong_guess(procs: Procs, tmp_path: Path) -> None:
    """The host loses the server between the joiner's SPAKE2 message and its own: the joiner
    learned nothing, so no guess was spent. With --guess-limit 1 a counted guess would have
    replaced the token everyone was given."""
    text, seen = join_across_a_drop(
        procs, tmp_path, drop_host_on("pake", True), "--guess-limit", "1"
    )
    assert "wrong" not in seen and "new read-write token" not in seen, seen
    assert "wrong" not in text, text
    assert re.search(r"peer \w+: the handshake lost the server", text), text
    assert "Traceback" not in text


@pytest.mark.e2e
def test_losing_the_server_ends_the_handshakes_under_way_at_once(
    procs: Procs, tmp_path: Path
) -> None:
    """The joiner's key confirmation never reaches the host, which the server drops instead:
    the host's handshake, holding its role's turn, ends then rather than at its 30 s timeout,
    and the next joiner gets in."""
    text, _ = join_across_a_drop(procs, tmp_path, drop_host_on("confirm", False))
    assert re.search(r"peer \w+: the joiner left during the handshake", text), text
    assert "timed out" not in text, text


# -- 16: --bind to an address that is not the default ----------------------------------------


@pytest.mark.e2e
def test_bind_to_a_specific_loopback_address_dials_and_advertises_it(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    host, info = start_host(procs, tmp_path, None, "--bind", "127.0.0.2", "--port", str(port))
    assert info["server"] == f"ws://127.0.0.2:{port}/ws", info
    assert "127.0.0.2" in " ".join(info["join_command"])
    shell_ready(host)
    joiner = start_join(procs, info)
    shell_ready(joiner)
    joiner.send("exit 3\r")
    assert joiner.exit_code() == 3
    assert host.exit_code() == 3


# -- 15: --record on a disk that cannot keep up; a command that cannot run ---------------------


def test_recording_never_blocks_and_stays_bounded_when_the_disk_stalls(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled.cast"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, but nobody reads: a stall
    rec = Recorder(fifo, 80, 24, ["bash"])
    chunk = b"x" * 65536
    peak = 0

    def feed() -> None:
        nonlocal peak
        for i in range(800):  # 50 MiB, far more than the pipe and the queue hold
            rec.output(chunk)
            if i % 100 == 0:
                rec.resize(80 + i % 7, 24)
            peak = max(peak, rec.queued)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    feeder.join(20)
    try:
        assert not feeder.is_alive(), "output() blocked on a stalled disk"
        assert peak <= QUEUE_LIMIT
        assert rec.dropped_total > 40 * 1024 * 1024

        got = bytearray()
        done = threading.Event()

        def drain() -> None:
            os.set_blocking(reader, True)
            while chunk_ := os.read(reader, 1 << 20):
                got.extend(chunk_)
            done.set()

        threading.Thread(target=drain, daemon=True).start()
        rec.output("done \u00e9".encode()[:-1])  # a character cut in half by a read...
        rec.output("\u00e9".encode()[-1:])  # ...is written whole
        rec.close()
        assert done.wait(20)
    finally:
        os.close(reader)
    lines = got.decode().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == 80
    events = [json.loads(line) for line in lines[1:]]
    assert all(isinstance(e, list) and len(e) == 3 for e in events)
    assert any(e[1] == "m" and "not recorded" in e[2] for e in events)
    assert "".join(e[2] for e in events if e[1] == "o").endswith("done é")
    times = [e[0] for e in events]
    assert times == sorted(times)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_command_that_cannot_run_leaks_no_pty(tmp_path: Path) -> None:
    from beach_cli.host.pty import PtyProcess

    garbage = tmp_path / "not-a-program"
    garbage.write_bytes(b"\x7fELF\x00garbage")  # executable, but no format the kernel runs
    garbage.chmod(0o755)
    before = open_fds()
    for _ in range(20):
        with pytest.raises(BeachError, match=r"cannot run .*not-a-program: Exec format error"):
            await PtyProcess.spawn([str(garbage)], 80, 24)
        with pytest.raises(BeachError, match="embedded null byte"):
            await PtyProcess.spawn(["bash\x00x"], 80, 24)
        with pytest.raises(BeachError, match="Not a directory"):
            await PtyProcess.spawn(["/etc/passwd/x"], 80, 24)
    assert open_fds() <= before


@pytest.mark.e2e
def test_beach_host_with_a_command_that_cannot_run_says_so_in_one_line(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    # A path through a file: execve fails with ENOTDIR, neither of the two errors once handled.
    p = procs.start([BEACH, "host", "--server", server, "--", "/etc/passwd/x"])
    p.expect("cannot run /etc/passwd/x: Not a directory")
    assert p.exit_code() == 1
    assert "Traceback" not in p.transcript.getvalue()


def test_the_delay_schedule_grows_to_one_guess_a_minute() -> None:
    from beach_cli.host.guesses import DEFAULT_GUESS_LIMIT, delay_after

    assert [delay_after(n) for n in range(12)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    # A flood's first secret: three free guesses, then it waits for each of the rest.
    assert sum(delay_after(n) for n in range(DEFAULT_GUESS_LIMIT)) == 123  # s until the 10th
