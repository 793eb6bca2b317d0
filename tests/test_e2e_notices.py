"""What a person sees of beach's own news, in real terminals (tmux, read with capture-pane):
the host learns who joined, left or guessed wrong from a line across its screen (tmux shows
no title), the joiner from one line how it is connected; each line goes after a few seconds
and the screen under it comes back cell for cell, colours included, for the host and the
joiner alike. `--quiet` keeps the host's screen to the shared program alone (the title still
says). A reconnect that lands on another path says so again."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import BEACH, SHELL, TIMEOUT, Procs, shell_ready, start_host
from netns import Net, network
from test_completion import Tmux

from beach_cli.screen.status_line import SHOWN, STYLE

pytestmark = pytest.mark.e2e

COLOURS = r"printf '\e[31mred\e[0m \e[1;44mbold on blue\e[0m\n'; echo ready-$((1+1))"


def host_in_tmux(tmp_path: Path, server: str, *flags: str) -> tuple[Tmux, dict]:
    """`beach host` typed into a tmux pane, as a person would; its --info-file."""
    tmux = Tmux(tmp_path, cols=80, rows=24)
    try:
        info = tmp_path / f"info-{time.monotonic_ns()}.json"
        argv = [BEACH, "host", "--info-file", str(info), "--server", server, *flags, "--", *SHELL]
        tmux.keys(" ".join(argv), "Enter")
        tmux.shows("the shell starts below")
        deadline = time.monotonic() + TIMEOUT
        while not info.exists():
            assert time.monotonic() < deadline, "no info file"
            time.sleep(0.05)
        tmux.shows("below; exit it to end the session\nbash")
        tmux.keys("PS1='$ '; " + COLOURS, "Enter")
        tmux.shows("ready-2\n$")
        return tmux, json.loads(info.read_text())
    except BaseException:
        tmux.close()  # (the test's own finally never runs)
        raise


def gone(tmux: Tmux, text: str, want: str) -> None:
    """Wait (bounded) for `text` to leave the pane, then: the pane is `want` exactly."""
    deadline = time.monotonic() + SHOWN + TIMEOUT
    while text in (screen := tmux.screen(escapes=True)):
        assert time.monotonic() < deadline, f"{text!r} stayed:\n{screen}"
        time.sleep(0.1)
    assert screen == want


def test_host_and_joiner_see_their_lines_and_then_their_screens_intact(
    server: str, tmp_path: Path
) -> None:
    host, info = host_in_tmux(tmp_path, server)
    joiner = Tmux(tmp_path, cols=80, rows=24)
    try:
        before = host.screen(escapes=True)
        joiner.keys(" ".join([BEACH, *info["join_command"][1:]]), "Enter")

        # The host: who joined, across its bottom row; every other row as it was.
        lines = host.shows("joined (read-write)").splitlines()
        assert re.fullmatch(r" beach: \d\d:\d\d \S+ .*joined \(read-write\)\s*", lines[23])
        assert host.screen(escapes=True).splitlines()[:23] == before.splitlines()[:23]
        # The joiner: how it is connected, across its bottom row.
        lines = joiner.shows("beach: connected, peer-to-peer").splitlines()
        assert lines[23].startswith(" beach: connected, peer-to-peer")
        gone(host, "joined (read-write)", before)
        deadline = time.monotonic() + SHOWN + TIMEOUT
        while "connected, peer-to-peer" in (seen := joiner.screen(escapes=True)):
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        # The joiner shows the shared screen as the host does (below the host's banner),
        # colours and all.
        start = next(i for i, line in enumerate(before.splitlines()) if "PS1=" in line)
        shared = host.screen(escapes=True, start=start).rstrip("\n")
        assert seen.rstrip("\n") == shared

        # Leaving: said on the host's screen, which then comes back intact.
        joiner.keys("C-]", "d")
        host.shows(" left")
        gone(host, " left", before)

        # A wrong guess: said too.
        joiner.keys(
            f"{BEACH} join --server {server} {info['join_token'].split('-')[0]}-wrongtoken",
            "Enter",
        )
        lines = host.shows("wrong token").splitlines()
        assert "wrong token" in lines[23]
        gone(host, "wrong token", before)
    finally:
        joiner.close()
        host.close()


def test_typing_while_a_line_shows_takes_it_down_first(server: str, tmp_path: Path) -> None:
    host, info = host_in_tmux(tmp_path, server)
    joiner = Tmux(tmp_path, cols=80, rows=24)
    try:
        joiner.keys(" ".join([BEACH, *info["join_command"][1:]]), "Enter")
        host.shows("joined (read-write)")
        host.keys("echo typed-$((6*7))", "Enter")  # while the line shows
        screen = host.shows("typed-42\n$")
        assert "joined" not in screen
        shared = joiner.shows("typed-42\n$")
        # The last rows of both are the shell's, the same: nothing of the line is left over.
        assert shared.rstrip().splitlines()[-3:] == screen.rstrip().splitlines()[-3:]
    finally:
        joiner.close()
        host.close()


@pytest.mark.parametrize("size", [(90, 24), (70, 24)], ids=["wider", "narrower"])
def test_a_resize_while_the_line_shows_leaves_nothing_of_it(
    server: str, tmp_path: Path, size: tuple[int, int]
) -> None:
    """The terminal reflows the line with the rest, and a shell redraws only its prompt: the
    host draws the shared screen again, and the joiner asks for a fresh one (its window may
    change without the PTY's), instead of leaving the line there for good."""
    host, info = host_in_tmux(tmp_path, server)
    joiner = Tmux(tmp_path, cols=80, rows=24)
    try:
        joiner.keys(" ".join([BEACH, *info["join_command"][1:]]), "Enter")
        host.shows("joined (read-write)")
        joiner.shows("connected, peer-to-peer")
        host.resize(*size)
        joiner.resize(*size)
        for pane, line in ((host, "joined"), (joiner, "connected, peer-to-peer")):
            deadline = time.monotonic() + SHOWN + TIMEOUT
            while line in (screen := pane.screen()):
                assert time.monotonic() < deadline, f"the line was left behind:\n{screen}"
                time.sleep(0.1)
            lines = screen.rstrip("\n").splitlines()
            assert "red bold on blue" in screen and lines[-2:] == ["ready-2", "$"]  # the shell's
        host.keys("echo after-$((6*7))", "Enter")
        for pane in (host, joiner):
            assert "joined" not in pane.shows("after-42\n$")
            assert "connected" not in pane.screen()
    finally:
        joiner.close()
        host.close()


def test_quiet_host_shows_no_line_but_says_it_in_the_title(server: str, tmp_path: Path) -> None:
    host, info = host_in_tmux(tmp_path, server, "--quiet")
    raw = tmp_path / "host-pane.bytes"
    host.record(raw)
    joiner = Tmux(tmp_path, cols=80, rows=24)
    try:
        joiner.keys(" ".join([BEACH, *info["join_command"][1:]]), "Enter")
        joiner.shows("connected, peer-to-peer")
        deadline = time.monotonic() + TIMEOUT
        while b"joined (read-write)" not in raw.read_bytes():  # the title, as it is written
            assert time.monotonic() < deadline, raw.read_bytes()[-2000:]
            time.sleep(0.05)
        host.keys("echo after-$((2+2))", "Enter")  # a round trip after the title
        host.shows("after-4\n$")
        written = raw.read_bytes()
        assert re.search(rb"\x1b\]2;beach [^\x07]*joined \(read-write\)\x07", written)
        assert STYLE + b" beach:" not in written  # no line was drawn
    finally:
        joiner.close()
        host.close()


@pytest.mark.netns
def test_a_reconnect_onto_another_path_says_so(procs: Procs, tmp_path: Path) -> None:
    """Peer to peer first; then UDP stops (a network that blocks it): the joiner reconnects
    through the server relay and says so, in a line and its title."""
    with network("iptables") as net:
        host_ns, join_ns = net.ns("host"), net.ns("join")
        net.link(host_ns, "10.77.0.1/24", join_ns, "10.77.0.2/24")
        srv = procs.start(
            [*net.exec(host_ns), BEACH, "serve", "--host", "10.77.0.1", "--port", "0"]
        )
        srv.expect(r"listening on (ws://\S+)")
        url = srv.child.match.group(1)
        host, info = start_host(procs, tmp_path, url, wrap=net.exec(host_ns), cols=80, rows=24)
        shell_ready(host)
        cmd = [*net.exec(join_ns), BEACH, *info["join_command"][1:]]
        joiner = procs.start(cmd, cols=80, rows=24)
        joiner.expect(re.escape(STYLE.decode()) + " beach: connected, peer-to-peer")
        Net.block_udp(join_ns)
        joiner.expect("reconnecting", timeout=30)
        joiner.expect(
            re.escape(STYLE.decode()) + r" beach: reconnected, server relay \(no direct path\)",
            timeout=60,
        )
        joiner.send("echo relayed-$((20+1))\r")
        host.expect("relayed-21")
        joiner.expect("relayed-21")
        joiner.send("\x1dd")
        assert joiner.exit_code() == 0
        host.send("exit\r")
        assert host.exit_code() == 0
