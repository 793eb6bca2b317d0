"""A view-only joiner that types is told, once, that its keystrokes go nowhere, across the
bottom row of its terminal (the title alone is not seen in tmux and many setups) and in its
title; its keys are never sent, and the row comes back as the host has it: cell for cell from
the status line's model, or (the alternate screen, where no model is exact) from a fresh
screen. The host's NOTICE stays for joiners that do send them (older ones)."""

from __future__ import annotations

import re
import time

import pytest
from conftest import BEACH, Procs, shell_ready, start_host, start_join
from test_completion import Tmux
from test_security import RECORDER

from beach_cli.join.session import VIEW_ONLY_LINE, VIEW_ONLY_SHOWN
from beach_cli.screen.status_line import SHOWN

pytestmark = pytest.mark.e2e


def test_a_view_only_joiner_that_types_is_told_once(procs: Procs, server: str, tmp_path) -> None:
    log = tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        command=["python3", "-c", RECORDER],  # prints every byte its PTY got, at END
        global_opts=("--log-file", str(log), "--log-level", "info"),
    )
    host.expect("recorder-ready")
    viewer = start_join(procs, info, key="view_join_command")
    viewer.expect("recorder-ready")
    viewer.send("KEYS-1")
    viewer.expect(re.escape(VIEW_ONLY_LINE))
    viewer.send("KEYS-2")
    writer = start_join(procs, info)
    writer.expect("recorder-ready")
    writer.send("WRITER-END")
    for p in (host, writer, viewer):
        p.expect("WRITER-END")
    assert host.exit_code() == 0
    assert viewer.exit_code() == 0
    assert "KEYS" not in host.transcript.getvalue()  # the shared program never got them
    assert "dropped" not in log.read_text()  # nor did the host: they were never sent
    assert viewer.transcript.getvalue().count(VIEW_ONLY_LINE) == 1  # told once


def test_a_viewer_in_tmux_sees_the_line_and_then_the_hosts_screen_again(
    procs: Procs, server: str, tmp_path
) -> None:
    host, info = start_host(procs, tmp_path, server, cols=80, rows=24)
    shell_ready(host)
    host.send("clear; for i in 1 2 3; do echo row-$i; done\r")
    host.expect("row-3")
    shell_ready(host)
    tmux = Tmux(tmp_path, cols=80, rows=24)
    try:
        tmux.keys(" ".join([BEACH, *info["view_join_command"][1:]]), "Enter")
        tmux.shows("beach: connected")
        deadline = time.monotonic() + SHOWN + 10
        while "beach: connected" in (before := tmux.screen()):  # how it connected, then not
            assert time.monotonic() < deadline, before
            time.sleep(0.1)
        before_escapes = tmux.screen(escapes=True)
        tmux.keys("x")
        lines = tmux.shows(VIEW_ONLY_LINE[:40]).splitlines()
        assert lines[23].startswith(" " + VIEW_ONLY_LINE)  # the status line, on the bottom row
        assert lines[:3] == before.splitlines()[:3]  # the rest untouched
        deadline = time.monotonic() + VIEW_ONLY_SHOWN + 10
        while VIEW_ONLY_LINE[:40] in (screen := tmux.screen()):
            assert time.monotonic() < deadline, screen
            time.sleep(0.1)
        assert screen.splitlines()[:4] == ["row-1", "row-2", "row-3", "$"]
        assert screen == before
        assert tmux.screen(escapes=True) == before_escapes  # cell for cell, colours too
    finally:
        tmux.close()
    host.send("exit\r")
    assert host.exit_code() == 0


def test_a_viewer_of_the_alternate_screen_sees_the_line_and_then_the_hosts_screen(
    procs: Procs, server: str, tmp_path
) -> None:
    host, info = start_host(procs, tmp_path, server, cols=80, rows=24)
    shell_ready(host)
    # A full-screen program's screen, as vim's would be: no model of it is exact.
    host.send("printf '\\033[?1049h\\033[2J\\033[Halt-screen\\n'; read -r x\r")
    host.expect("alt-screen")
    tmux = Tmux(tmp_path, cols=80, rows=24)
    try:
        tmux.keys(" ".join([BEACH, *info["view_join_command"][1:]]), "Enter")
        before = tmux.shows("alt-screen")
        tmux.keys("x")
        lines = tmux.shows(VIEW_ONLY_LINE[:40]).splitlines()
        assert lines[23].startswith(VIEW_ONLY_LINE)  # written over the bottom row
        assert lines[0] == "alt-screen"
        deadline = time.monotonic() + VIEW_ONLY_SHOWN + 10
        while VIEW_ONLY_LINE[:40] in (screen := tmux.screen()):
            assert time.monotonic() < deadline, screen
            time.sleep(0.1)
        assert screen == before  # the fresh screen put the row back
    finally:
        tmux.close()
    host.send("\r")
    shell_ready(host)
    host.send("exit\r")
    assert host.exit_code() == 0
