"""Faults end to end: the server dies and comes back, peers are killed, the shell is killed."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import BEACH, Procs, free_port, shell_ready, start_host, start_join, wait_for_line

pytestmark = pytest.mark.e2e


def test_server_restart_keeps_sessions_and_tokens(procs: Procs, tmp_path) -> None:
    port = free_port()
    serve = [BEACH, "serve", "--host", "127.0.0.1", "--port", str(port)]
    srv = procs.start(serve)
    srv.expect("listening")
    log = tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        f"ws://127.0.0.1:{port}/ws",
        global_opts=("--log-file", str(log), "--log-level", "info"),
    )
    shell_ready(host)
    joiner = start_join(procs, info)
    shell_ready(joiner)
    # The session starts on the sealed relay and moves to the data channel at once: from then
    # on (both ends moved) it needs no server.
    wait_for_line(log, "moved to the data channel")
    joiner.expect("connected, peer-to-peer")

    srv.child.kill(signal.SIGKILL)
    assert srv.exit_code() == 128 + signal.SIGKILL
    # The established session does not need the server.
    joiner.send("echo no-server-$((6*6))\r")
    for p in (host, joiner):
        p.expect("no-server-36")

    srv2 = procs.start(serve)
    srv2.expect("listening")
    host.expect("reconnected to the server", timeout=30)  # in the host's title
    # Same session id, same token: a new joiner gets in with what was printed at the start.
    late = start_join(procs, info)
    late.expect("no-server-36")
    late.send("exit 4\r")
    for p in (host, joiner, late):
        assert p.exit_code() == 4


def test_killed_joiner_is_freed_quickly(procs: Procs, server: str, tmp_path) -> None:
    log = tmp_path / "host.log"
    host, info = start_host(
        procs, tmp_path, server, global_opts=("--log-file", str(log), "--log-level", "debug")
    )
    shell_ready(host)
    joiner = start_join(procs, info)
    shell_ready(joiner)
    host.expect("joined")
    joiner.child.kill(signal.SIGKILL)
    # A killed joiner says nothing and its server connection is long closed: the heartbeat
    # frees it after 4 s of silence (checked every second). The 30 s allowed is far above
    # that, so only a hang fails here, never a busy machine.
    host.expect(r"\w+ \(.*\) left", timeout=30)  # the host's title says who left
    assert "lost (no sign of life for 4 s)" in log.read_text()  # ...and the heartbeat, why
    host.send("exit\r")
    assert host.exit_code() == 0


def test_shell_killed_by_a_signal_is_reported(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    joiner = start_join(procs, info)
    shell_ready(joiner)
    joiner.send("echo pid=$$\r")
    joiner.expect(r"pid=(\d+)")
    os.kill(int(joiner.child.match.group(1)), signal.SIGKILL)
    joiner.expect("the host's shell was killed by SIGKILL")
    host.expect("the shared shell was killed by SIGKILL")
    assert joiner.exit_code() == 128 + signal.SIGKILL
    assert host.exit_code() == 128 + signal.SIGKILL
