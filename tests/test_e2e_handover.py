"""Early relay (link/handover.py), real `beach` processes on a real server: the joiner's screen
comes over the sealed relay before the data channel opens, the session moves to the channel
with every keystroke and every byte of output once and in order, a joiner with no channel
stays on the relay without waiting for it, and a joiner that does not ask (an older one, or
BEACH_EARLY_RELAY=0) gets the channel first, as before."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BEACH, Procs, shell_ready, start_host, wait_for_line
from loop_thread import LoopThread
from netns import Net, network
from oracle import Window, check

from beach_cli.link import handover
from beach_cli.link.handover import HandoverLink
from beach_cli.wire.frames import Frame, encode_frame

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent

# sitecustomize for both processes: the data channel's SCTP association starts this late, so
# the move comes while the test types (everything before it travels the relay).
SLOW_CHANNEL = """
import asyncio
import aiortc.rtcsctptransport as sctp

_start = sctp.RTCSctpTransport.start


async def start(self, *args, **kwargs):
    await asyncio.sleep(DELAY)
    return await _start(self, *args, **kwargs)


sctp.RTCSctpTransport.start = start
"""
DELAY = 2.0  # s
LINES = 400  # at most, typed one at a time, each echoed before the next


def slow_channel(tmp_path: Path) -> str:
    inject = tmp_path / "inject"
    inject.mkdir(exist_ok=True)
    (inject / "sitecustomize.py").write_text(SLOW_CHANNEL.replace("DELAY", repr(DELAY)))
    return str(inject)


def joiner_argv(info: dict, log: Path, *wrap: str) -> list[str]:
    cmd = list(info["join_command"])
    return [*wrap, BEACH, "--log-file", str(log), "--log-level", "info", *cmd[1:]]


def test_the_screen_comes_over_the_relay_and_the_move_keeps_every_keystroke_in_order(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    inject = slow_channel(tmp_path)
    cast, host_log, join_log = tmp_path / "s.cast", tmp_path / "host.log", tmp_path / "join.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        "--record",
        str(cast),
        global_opts=("--log-file", str(host_log), "--log-level", "info"),
        cols=80,
        rows=24,
        PYTHONPATH=inject,
    )
    shell_ready(host)
    joiner = procs.start(joiner_argv(info, join_log), cols=80, rows=24, PYTHONPATH=inject)
    shell_ready(joiner)
    # The screen came before the channel opened: greeted over the relay, both ends. (Each end
    # logs it once the greeting is through, which can be just after the screen is drawn.)
    wait_for_line(join_log, "connected (server relay)")
    wait_for_line(host_log, "greeted over the server relay")
    assert "moved to the data channel" not in join_log.read_text()

    typed = tmp_path / "typed.txt"
    joiner.send(f"cat > {typed}\r")
    moved_at = None
    for n in range(LINES):
        joiner.send(f"n{n:04d}\r")
        joiner.expect(f"n{n:04d}")  # the echo, whichever path it took
        if moved_at is None and "moved to the data channel" in join_log.read_text():
            moved_at = n
        if moved_at is not None and n >= moved_at + 20:
            break
    assert moved_at is not None and moved_at > 0, "the move did not happen while typing"
    joiner.send("\x04")
    shell_ready(joiner)
    lines = typed.read_text().split()
    assert lines == [f"n{i:04d}" for i in range(len(lines))]  # each once, in order
    assert len(lines) == n + 1
    # The title said where the session went (its OSC went by while the test typed).
    assert "beach: connected, peer-to-peer" in joiner.transcript.getvalue()
    check(cast, Window(joiner, 80, 24))  # the joiner's screen is the host's, cell for cell
    assert "moved to the data channel (peer-to-peer)" in host_log.read_text()
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    host.send("exit\r")
    assert host.exit_code() == 0


def test_a_joiner_that_does_not_ask_gets_the_channel_first(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    host_log, join_log = tmp_path / "host.log", tmp_path / "join.log"
    host, info = start_host(
        procs, tmp_path, server, global_opts=("--log-file", str(host_log), "--log-level", "info")
    )
    shell_ready(host)
    joiner = procs.start(joiner_argv(info, join_log), BEACH_EARLY_RELAY="0")
    joiner.expect("connected, peer-to-peer")
    shell_ready(joiner)
    joiner.send("echo asked-not-$((6*7))\r")
    host.expect("asked-not-42")
    assert "connected (peer-to-peer)" in join_log.read_text()
    assert "server relay" not in host_log.read_text()
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    host.send("exit\r")
    assert host.exit_code() == 0


@pytest.fixture
def net() -> Iterator[Net]:
    with network("iptables") as n:
        yield n


@pytest.mark.netns
def test_with_no_channel_the_screen_comes_at_once_and_the_session_stays_relayed(
    procs: Procs, tmp_path: Path, net: Net
) -> None:
    host_ns, join_ns = net.ns("host"), net.ns("join")
    net.link(host_ns, "10.77.0.1/24", join_ns, "10.77.0.2/24")
    net.block_udp(join_ns)  # no data channel can open
    srv = procs.start(
        [
            *net.exec(host_ns),
            sys.executable,
            str(HERE / "recording_server.py"),
            "10.77.0.1",
            str(tmp_path / "server.log"),
        ]
    )
    srv.expect(r"listening on (ws://\S+)")
    host_log, join_log = tmp_path / "host.log", tmp_path / "join.log"
    host, info = start_host(
        procs,
        tmp_path,
        srv.child.match.group(1),
        wrap=net.exec(host_ns),
        global_opts=("--log-file", str(host_log), "--log-level", "info"),
    )
    shell_ready(host)
    joiner = procs.start(joiner_argv(info, join_log, *net.exec(join_ns)))
    shell_ready(joiner)
    joiner.send("echo early-$((6*7))\r")
    host.expect("early-42")
    joiner.expect("early-42")
    # Typed and shown before the channel's wait ran out: no pause for it.
    assert "no data channel opened" not in join_log.read_text()
    joiner.expect("connected, server relay", timeout=40)  # then it says it stays
    wait_for_line(join_log, "no data channel opened: staying on the server relay")
    host.expect("via the server")
    joiner.send("echo still-$((6*7))\r")
    joiner.expect("still-42")
    host.send("exit 6\r")
    assert joiner.exit_code() == 6
    assert host.exit_code() == 6


async def withholding_joiner(server: str, token: str, typed: bytes) -> str:
    """A joiner of beach's own modules whose move marker never goes out (it sends a NOTICE
    in its place), and which then types on the data channel: why its link ended."""
    from beach_cli.join.dialer import Dialer
    from beach_cli.keys import parse_token
    from beach_cli.link import rtc
    from beach_cli.wire.frames import FRAME_VERSION, Frame, Hello, encode_hello, encode_input

    greeted = asyncio.Event()

    def on_frame(kind: Frame, body: bytes) -> None:
        if kind == Frame.HELLO:
            greeted.set()

    loaded: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    loaded.set_result(rtc)
    t = parse_token(token)
    link = await Dialer(server, t, [], 20.0, loaded, on_frame).dial(lambda _: None, None)
    assert isinstance(link, HandoverLink)
    # Nor does it drop its relay once it has the host's marker: the relay stays alive, so only
    # the marker's absence can end it.
    relay = link.relay
    retire = relay.close

    async def keep() -> None:
        pass

    relay.close = keep  # type: ignore[method-assign]
    try:
        link.send(encode_hello(Hello(FRAME_VERSION, t.role, 80, 24, ())))
        async with asyncio.timeout(20):
            await greeted.wait()  # over the relay
            while link._out is link.relay:  # noqa: ASYNC110 (our channel opening; bounded)
                await asyncio.sleep(0.05)
        link.send(encode_input(0, typed))  # on the channel, with no marker before it
        async with asyncio.timeout(30):
            await link.lost.wait()  # the host drops us
        return link.lost_reason
    finally:
        await link.close()
        await retire()


def test_a_joiner_that_withholds_its_marker_is_dropped_and_its_typing_never_lands(
    procs: Procs, server: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(handover, "MOVE", encode_frame(Frame.NOTICE, b"not a marker"))
    log = tmp_path / "host.log"
    host, info = start_host(
        procs, tmp_path, server, global_opts=("--log-file", str(log), "--log-level", "info")
    )
    shell_ready(host)
    loop = LoopThread(timeout=60)
    try:
        loop.call(withholding_joiner(server, info["join_token"], b"echo typed-$((6*7))\r"))
    finally:
        loop.stop()
    wait_for_line(log, "its marker did not come through the server within 10 s")
    assert "typed-42" not in host.transcript.getvalue()
    # The host is unharmed: a real joiner gets in and types.
    joiner = procs.start(joiner_argv(info, tmp_path / "join.log"))
    shell_ready(joiner)
    joiner.send("echo after-$((6*7))\r")
    host.expect("after-42")
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    host.send("exit\r")
    assert host.exit_code() == 0
