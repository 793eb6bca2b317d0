"""The core promise, end to end: real `beach serve`, `beach host` and `beach join` processes in
pseudo-terminals, real aiohttp and aiortc on real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import pexpect
import pytest
from conftest import BEACH, Procs, shell_ready, start_host, start_join

pytestmark = pytest.mark.e2e


def test_two_joiners_share_one_shell(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    j1 = start_join(procs, info)
    shell_ready(j1)  # the late joiner sees the current screen, prompt included
    j2 = start_join(procs, info)
    shell_ready(j2)

    # Typed at a joiner: the shell's output (not just the echo) shows everywhere.
    j1.send("echo from-j1-$((6*7))\r")
    for p in (host, j1, j2):
        p.expect("from-j1-42")

    # Typed at the host: both joiners see it.
    host.send("echo from-host-$((7*7))\r")
    for p in (host, j1, j2):
        p.expect("from-host-49")

    # The shell's exit status reaches every process.
    j2.send("exit 7\r")
    assert host.exit_code() == 7
    for j in (j1, j2):
        j.expect("exited with status 7")
        assert j.exit_code() == 7


def test_late_joiner_sees_the_current_screen(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    host.send("for i in $(seq 1 5); do echo line-$i-$((i*11)); done\r")
    host.expect("line-5-55")
    joiner = start_join(procs, info)
    for i in range(1, 6):
        joiner.expect(f"line-{i}-{i * 11}")
    host.send("exit\r")
    assert host.exit_code() == 0


def test_unknown_session_is_one_clear_line(procs: Procs, server: str) -> None:
    joiner = procs.start([BEACH, "join", "--server", server, "zzzzzz-abcdef"])
    joiner.expect("beach: there is no session zzzzzz")
    assert joiner.exit_code() == 5
    assert "Traceback" not in joiner.transcript.getvalue()


def test_malformed_token_is_refused_before_connecting(procs: Procs, server: str) -> None:
    joiner = procs.start([BEACH, "join", "--server", server, "not a token"])
    joiner.expect("is not a join token")
    assert joiner.exit_code() == 6


def test_wrong_secret_is_refused(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    bad = info["session"] + "-wrong2"
    joiner = procs.start([BEACH, "join", "--server", server, bad])
    joiner.expect("the join token is wrong or no longer valid")
    assert joiner.exit_code() == 6
    assert "Traceback" not in joiner.transcript.getvalue()
    # The host carries on, and the right token still works.
    good = start_join(procs, info)
    shell_ready(good)
    good.send("echo still-$((2*21))\r")
    good.expect("still-42")
    host.send("exit\r")
    assert host.exit_code() == 0


def test_unreachable_server(procs: Procs) -> None:
    joiner = procs.start([BEACH, "join", "--server", "ws://127.0.0.1:9", "abcdef-ghjkmn"])
    joiner.expect("cannot reach the server")
    assert joiner.exit_code() == 4
    assert "Traceback" not in joiner.transcript.getvalue()


def test_detach_leaves_the_session_running(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    joiner = start_join(procs, info)
    shell_ready(joiner)
    joiner.send("\x1dd")  # Ctrl-] d
    joiner.expect("detached")
    assert joiner.exit_code() == 0
    # The host's shell is untouched and a new joiner can come in.
    host.send("echo after-$((3*3))\r")
    host.expect("after-9")
    again = start_join(procs, info)
    again.expect("after-9")
    again.send("exit 3\r")
    assert host.exit_code() == 3
    assert again.exit_code() == 3


def test_embedded_server(procs: Procs, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, None, "--port", "0")
    shell_ready(host)
    server = info["server"]
    assert server.startswith("ws://") and "127.0.0.1" not in server  # this machine's address
    health = json.load(
        urllib.request.urlopen(
            server.replace("ws://", "http://").replace("/ws", "/healthz"), timeout=5
        )
    )
    assert health["status"] == "ok" and health["sessions"] == 1
    joiner = start_join(procs, info)
    shell_ready(joiner)
    joiner.send("echo embedded-$((5*5))\r")
    host.expect("embedded-25")
    host.send("exit 4\r")
    assert joiner.exit_code() == 4
    assert host.exit_code() == 4


def test_host_runs_a_command_and_reports_a_signal(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server, command=["sh", "-c", "echo ready; sleep 60"])
    host.expect("ready")
    joiner = start_join(procs, info)
    joiner.expect("ready")
    joiner.send("\x03")  # Ctrl-C from the joiner reaches the command as SIGINT
    joiner.expect("killed by SIGINT")
    assert joiner.exit_code() == 130
    assert host.exit_code() == 130


def test_killed_host_is_noticed_quickly(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    joiner = start_join(procs, info)
    shell_ready(joiner)
    host.child.kill(signal.SIGKILL)
    # Nothing tells the joiner that a killed host is gone but the heartbeat: the link is lost
    # after 4 s of silence (checked every second), and the joiner says so. The 30 s allowed is
    # far above that, so only a hang fails here, never a busy machine.
    # (Or, when the server's word comes while the session is still on the early relay, the
    # server's "the host left".)
    joiner.expect(
        r"connection lost \((no sign of life for 4 s|the host left)\); reconnecting", timeout=30
    )
    # Its reconnection learns from the server that the host is gone: it stops.
    joiner.expect("lost the connection to the host: the host of session .* is not connected")
    assert joiner.exit_code() == 8


def test_terminal_is_restored_on_every_way_out(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    join = " ".join(info["join_command"])

    def run_then_stty(how: str) -> str:
        p = procs.start(["sh", "-c", f"{join}; echo rc=$?; stty -a"])
        shell_ready(p)
        if how == "detach":
            p.send("\x1dd")
        elif how == "sigterm":
            pids = subprocess.run(["pgrep", "-P", str(p.child.pid)], capture_output=True, text=True)
            os.kill(int(pids.stdout.split()[0]), signal.SIGTERM)
        p.expect(r"rc=(\d+)")
        rc = int(p.child.match.group(1))
        p.expect(pexpect.EOF)
        stty = p.child.before
        assert " icanon" in stty and " echo " in stty and " -icanon" not in stty, stty
        return str(rc)

    assert run_then_stty("detach") == "0"
    assert run_then_stty("sigterm") == "143"
    host.send("exit\r")
    assert host.exit_code() == 0


def test_window_sizes_follow_the_smallest_read_write_window(procs: Procs, server: str, tmp_path):
    log = tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        global_opts=("--log-file", str(log), "--log-level", "info"),
        cols=100,
        rows=30,
    )
    shell_ready(host)
    host.send("stty size\r")
    host.expect("30 100")
    joiner = start_join(procs, info, cols=90, rows=25)
    shell_ready(joiner)
    joiner.send("stty size\r")
    joiner.expect("25 90")
    viewer = start_join(procs, info, key="view_join_command", cols=40, rows=10)
    shell_ready(viewer)  # view-only windows do not shrink the PTY
    # The host's window shrinks below the joiner's: the host's size wins now.
    host.child.setwinsize(20, 70)
    host.send("stty size\r")
    host.expect("20 70")
    # The joiner grows: still bounded by the host.
    joiner.child.setwinsize(40, 120)
    joiner.send("stty size\r")
    joiner.expect("20 70")
    # The viewer's keystrokes go nowhere (its own joiner says so and sends none; a host drops
    # any it gets: test_hostile_joiner.py): they never reach the shell.
    viewer.send("echo viewer-$((8*8))\r")
    viewer.expect("view-only")
    host.send("echo host-$((9*9))\r")
    for p in (host, joiner, viewer):
        p.expect("host-81")
    for p in (host, joiner, viewer):  # neither echoed nor run, anywhere, at any time
        assert "viewer-" not in p.transcript.getvalue(), p.argv
    host.send("exit\r")
    assert host.exit_code() == 0


def test_the_printed_link_joins_from_a_terminal(procs: Procs, tmp_path) -> None:
    """`beach host` prints the link first; `beach join LINK` needs nothing else."""
    host, info = start_host(procs, tmp_path, None, "--port", "0")
    shell_ready(host)
    banner = host.transcript.getvalue()
    link, view = info["join_link"], info["view_link"]
    server = info["server"]
    assert link == server.replace("ws://", "http://").replace("/ws", "/j/#") + info["join_token"]
    assert view.endswith("/j/#" + info["view_token"])
    assert banner.index(link) < banner.index(" ".join(info["join_command"]))
    joiner = procs.start([BEACH, "join", link])
    shell_ready(joiner)
    joiner.send("echo linked-$((6*7))\r")
    host.expect("linked-42")
    viewer = procs.start([BEACH, "join", view])
    viewer.expect("linked-42")
    host.send("exit 5\r")
    assert joiner.exit_code() == 5 and viewer.exit_code() == 5
    assert host.exit_code() == 5


def test_a_bad_link_is_one_clear_line(procs: Procs, tmp_path) -> None:
    joiner = procs.start([BEACH, "join", "http://127.0.0.1:9/other/#abcdef-ghjkmn"])
    joiner.expect("is not a beach link")
    assert joiner.exit_code() == 2
    assert "Traceback" not in joiner.transcript.getvalue()
    # (the tests set no BEACH_SERVER; a state directory of this test's: no join yet)
    bare = procs.start([BEACH, "join", "abcdef-ghjkmn"], XDG_STATE_HOME=str(tmp_path))
    bare.expect("join with the link")
    assert bare.exit_code() == 2
    assert "last join" not in bare.transcript.getvalue()


def test_a_bare_token_suggests_the_server_of_the_last_join(
    procs: Procs, server: str, tmp_path
) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    joiner = procs.start([BEACH, "join", info["join_link"]], **state)
    shell_ready(joiner)
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    bare = procs.start([BEACH, "join", info["join_token"]], **state)
    short = server.removeprefix("ws://").removesuffix("/ws")
    bare.expect(f"your last join went through {short}: beach join --server {short} ")
    assert bare.exit_code() == 2
    host.send("exit\r")
    assert host.exit_code() == 0
