"""Output faster than anyone can read (host/stream.py's flood) reaches every joiner as the
current screen a few times a second, not byte by byte; the host's own terminal and its
recording get every byte, and the joiners end on the host's screen, cell for cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Procs, shell_ready, start_host, start_join
from oracle import Window, check

pytestmark = pytest.mark.e2e
FAST = {"maxread": 65536, "searchwindowsize": 4096}


def test_a_flood_reaches_joiners_as_screens_and_ends_on_the_hosts_screen(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    cast, log = tmp_path / "s.cast", tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        "--record",
        str(cast),
        global_opts=("--log-file", str(log), "--log-level", "info"),
        cols=80,
        rows=24,
        **FAST,
    )
    shell_ready(host)
    rw = start_join(procs, info, cols=80, rows=24, **FAST)
    view = start_join(procs, info, "view_join_command", cols=80, rows=24, **FAST)
    for joiner in (rw, view):
        shell_ready(joiner)
    # About 20 MB of coloured lines, as fast as the shell can print them.
    flood = "seq -f '\\033[32m%08g\\033[0m line of a long build log' 1 400000"
    host.send(f"{flood}; echo done-$((6*7))\r")
    host.expect("done-42", timeout=120)
    shell_ready(host)
    for joiner in (rw, view):
        joiner.expect("done-42", timeout=60)
        shell_ready(joiner)
    check(cast, Window(rw, 80, 24), Window(view, 80, 24), tail=64 * 1024)
    host_bytes = len(host.transcript.getvalue())
    for joiner in (rw, view):
        got = len(joiner.transcript.getvalue())
        assert got < host_bytes / 5, (got, host_bytes)  # screens, not the stream
    assert "output floods" in log.read_text()
    # Typing works as before once the flood is over: an echo, byte for byte.
    rw.send("echo after-$((6*7))\r")
    rw.expect("after-42")
    host.expect("after-42")
    host.send("exit\r")
    assert host.exit_code() == 0
