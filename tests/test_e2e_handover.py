"""Early relay (link/handover.py), real `beach` processes on a real server: the joiner's screen
comes over the sealed relay before the data channel opens, the session moves to the channel
with every keystroke and every byte of output once and in order, a joiner with no channel
stays on the relay without waiting for it, and a joiner that does not ask (an older one, or
BEACH_EARLY_RELAY=0) gets the channel first, as before."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BEACH, Procs, shell_ready, start_host, wait_for_line
from netns import Net, network
from oracle import Window, check

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
    # The screen came before the channel opened: greeted over the relay, both ends.
    assert "connected (server relay)" in join_log.read_text()
    assert "greeted over the server relay" in host_log.read_text()
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
