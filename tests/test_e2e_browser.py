"""The browser joiner end to end: a real headless Chromium (tests/browser.py) in one network
namespace opens the link of a real `beach host` in another, joined by a veth pair.

    host namespace  10.77.0.1  beach host (its embedded server on :7777), or beach serve
      |  veth
    web namespace   10.77.0.2  chromium

The page's contract: `window.beach` = {terminal (xterm.js), state ('connecting' | 'waiting' |
'connected' | 'ended'), exitCode, path ('peer-to-peer' | 'TURN relay' | 'server relay'),
error (why it ended badly), status (the last status line)}. The screen is read from the
terminal's buffer, never from the DOM.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyte
import pytest
from browser import Browsers, Tab, browsers
from conftest import BEACH, Proc, Procs, need, shell_ready, start_host, wait_for_line
from netns import Net, network
from oracle import CAST_CATCH_UP, CAST_POLL, Window, render_cast, text_lines
from recording_proxy import client_stream, connections

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

HERE = Path(__file__).parent
HOST_ADDR, WEB_ADDR = "10.77.0.1", "10.77.0.2"
CONNECT = 30.0  # seconds from opening the link to connected (peer to peer takes well under 2)
RELAY_CONNECT = 40.0  # the direct attempt has to give up first


@pytest.fixture
def net() -> Iterator[Net]:
    with network("iptables") as n:
        yield n


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Browsers]:
    with browsers(tmp_path / "browsers") as b:
        yield b


@dataclass
class World:
    net: Net
    host_ns: str
    web_ns: str
    host_dev: str  # the two ends of the link between them
    web_dev: str


@pytest.fixture
def world(net: Net) -> World:
    host_ns, web_ns = net.ns("host"), net.ns("web")
    host_dev, web_dev = net.link(host_ns, f"{HOST_ADDR}/24", web_ns, f"{WEB_ADDR}/24")
    net.default_route(web_ns, HOST_ADDR)  # Chromium gathers only on the default route's link
    return World(net, host_ns, web_ns, host_dev, web_dev)


def link_for(info: dict[str, Any], addr: str | None = None, view: bool = False) -> str:
    """The browser link for the host behind `info` (its --info-file), at `addr` (host:port) if
    given, else at the server the host registered with."""
    if addr is None and ("view_link" if view else "join_link") in info:
        return info["view_link" if view else "join_link"]
    token = info["view_token" if view else "join_token"]
    origin = addr or urlsplit(info["server"]).netloc
    return f"http://{origin}/j/#{token}"


def host_in(
    world: World, procs: Procs, tmp_path: Path, *extra: str, **kw: Any
) -> tuple[Proc, dict]:
    """`beach host` (a shell, its embedded server on :7777) in the host namespace."""
    host, info = start_host(procs, tmp_path, None, *extra, wrap=world.net.exec(world.host_ns), **kw)
    shell_ready(host)
    return host, info


def join(tab: Tab, url: str, record: Any = None, timeout: float = CONNECT) -> dict[str, Any]:
    """Open the link; return window.beach once connected (fails with what the page said)."""
    started = time.monotonic()
    tab.goto(url)
    state = tab.wait_state("connected", "ended", timeout=timeout)
    connected = time.monotonic() - started
    assert state["state"] == "connected", f"the page ended instead:\n{tab.report()}"
    if record is not None:
        record("page_load_seconds", round(tab.load_seconds or 0, 3))
        record("link_to_connected_seconds", round(connected, 3))
    print(f"\npage load {tab.load_seconds:.3f} s, link to connected {connected:.3f} s")
    return state


def stty_size(host: Proc) -> tuple[int, int]:
    # What `stty size` printed: a line of its own (after bash's bracketed-paste switch, a bare \r)
    host.expect(r"[\r\n](\d+) (\d+)\r\n")
    match = host.child.match
    return int(match.group(1)), int(match.group(2))


# -- the harness itself --------------------------------------------------------------------------

CANDIDATE_PAGE = """<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<script>
window.candidates = [];
window.gathered = false;
const pc = new RTCPeerConnection();
pc.createDataChannel('probe');
pc.onicecandidate = (e) => {
  if (e.candidate) window.candidates.push(e.candidate.candidate);
  else window.gathered = true;
};
pc.createOffer().then((offer) => pc.setLocalDescription(offer));
</script>
"""


def test_chromium_in_a_namespace_gathers_candidates(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    """Chromium in a namespace with a veth gathers host candidates (on loopback alone it
    gathers none): the ground every other test here stands on."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(CANDIDATE_PAGE)
    port = serve_dir(world, procs, site)

    chromium = web.launch(world.web_ns)
    record_property("browser_launch_seconds", round(chromium.launch_seconds, 3))
    tab = chromium.open(f"http://{HOST_ADDR}:{port}/", name="candidates")
    record_property("page_load_seconds", round(tab.load_seconds or 0, 3))
    candidates = tab.wait_for(
        "() => window.candidates.some((c) => / typ host/.test(c)) && window.candidates",
        "a host candidate was gathered",
        timeout=10,
    )
    print(
        f"\nchromium launch {chromium.launch_seconds:.3f} s, page load {tab.load_seconds:.3f} s,"
        f" candidates: {candidates}"
    )
    assert any(" udp " in c.lower() for c in candidates), candidates


def serve_dir(world: World, procs: Procs, site: Path) -> int:
    """`python -m http.server` for `site` in the host namespace; returns its port."""
    server = procs.start(
        [
            *world.net.exec(world.host_ns),
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            HOST_ADDR,
            "--directory",
            str(site),
            "0",
        ]
    )
    server.expect(r"port (\d+)")
    return int(server.child.match.group(1))


def recording_front(world: World, procs: Procs, upstream_port: str, record: Path) -> str:
    """tests/recording_proxy.py in the host namespace in front of HOST_ADDR:`upstream_port`;
    returns its host:port."""
    proxy = procs.start(
        [
            *world.net.exec(world.host_ns),
            sys.executable,
            str(HERE / "recording_proxy.py"),
            HOST_ADDR,
            HOST_ADDR,
            upstream_port,
            str(record),
        ]
    )
    proxy.expect(r"listening on (\S+)")
    return proxy.child.match.group(1)


def start_serve(world: World, procs: Procs) -> str:
    """`beach serve` in the host namespace; returns its port."""
    srv = procs.start(
        [*world.net.exec(world.host_ns), BEACH, "serve", "--host", HOST_ADDR, "--port", "0"]
    )
    srv.expect(r"listening on ws://[^:]+:(\d+)")
    return srv.child.match.group(1)


SENDER_PAGE = """<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<script>
window.sent = [];
window.replies = 0;
const ws = new WebSocket(new URLSearchParams(location.search).get('ws'));
ws.onmessage = () => { window.replies += 1; };
ws.onopen = () => {
  const long = 'x'.repeat(60000);
  for (const text of ['{"type":"probe","n":1}', '{"type":"probe","pad":"' + long + '"}', 'ü€']) {
    ws.send(text);
    window.sent.push(text);
  }
};
</script>
"""


def test_recording_proxy_reads_what_chromium_sends(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    """The recording proxy takes Chromium's real WebSocket frames (masked, a 16-bit length)
    apart into exactly the messages the page sent: the secret test's check sees plain text."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(SENDER_PAGE)
    port = serve_dir(world, procs, site)
    record = tmp_path / "proxy"
    front = recording_front(world, procs, start_serve(world, procs), record)
    tab = web.launch(world.web_ns).open(f"http://{HOST_ADDR}:{port}/?ws=ws://{front}/ws")
    tab.wait_for("() => window.replies >= 3", "the server answered all three messages")
    sent = tab.js("() => window.sent")
    streams = [client_stream(s, a) for s, a in connections(record)]
    assert len(streams) == 1 and b"Chrome" in streams[0].heads[0], streams
    assert [m.decode() for m in streams[0].messages] == sent
    assert streams[0].rest == b""


# -- the page ------------------------------------------------------------------------------------


def test_read_write_link_types_into_the_shell(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    host, info = host_in(world, procs, tmp_path)
    chromium = web.launch(world.web_ns)
    record_property("browser_launch_seconds", round(chromium.launch_seconds, 3))
    tab = chromium.open(name="read-write")
    state = join(tab, link_for(info), record_property)
    assert state["path"] == "peer-to-peer", tab.report()
    assert tab.js("() => location.hash") == "", "the page left the token in the address bar"
    tab.wait_text("$ ")
    tab.type("echo hi-$((6*7))")
    host.expect("hi-42")  # the shell ran what the browser typed...
    tab.wait_text("hi-42")  # ...and the page shows its output
    host.send("exit\r")
    state = tab.wait_state("ended")
    assert state["exitCode"] == 0, tab.report()
    assert host.exit_code() == 0


def test_view_only_link_drops_typing(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    host, info = host_in(world, procs, tmp_path)
    tab = web.launch(world.web_ns).open(name="view-only")
    join(tab, link_for(info, view=True), record_property)
    tab.wait_for("() => /view/i.test(window.beach.status || '')", "the page said it is view-only")
    tab.wait_text("$ ")
    tab.type("echo viewer-$((8*8))")
    host.send("echo host-$((9*9))\r")
    host.expect("host-81")
    screen = tab.wait_text("host-81")  # the page is live...
    host.send("exit 5\r")
    assert tab.wait_state("ended")["exitCode"] == 5, tab.report()
    assert host.exit_code() == 5
    # ...and what it typed was neither run nor echoed, at any time until the session ended.
    assert "viewer-" not in host.transcript.getvalue()
    assert not any("viewer-" in line for line in screen + tab.screen()), tab.report()


# Colours in one spelling for both sides: pyte names the 16 ANSI colours and gives hex for the
# rest; xterm.js gives a palette index or 0xRRGGBB.
PALETTE = pyte.graphics.FG_BG_256
ANSI = ["black", "red", "green", "brown", "blue", "magenta", "cyan", "white"]


def pyte_colour(value: str) -> str:
    name = value.replace("bfight", "bright")  # pyte's own misspelling of 105 (bright magenta)
    if name in ANSI:
        return PALETTE[ANSI.index(name)]
    if name.startswith("bright") and name[6:] in ANSI:
        return PALETTE[8 + ANSI.index(name[6:])]
    return name.lower()


def page_colour(colour: list[Any]) -> str:
    kind = colour[0]
    if kind == "default":
        return "default"
    return PALETTE[colour[1]] if kind == "palette" else f"{colour[1]:06x}"


def oracle_cells(screen: pyte.Screen) -> list[list[tuple[Any, ...]]]:
    """What a person sees of each cell (as oracle.cell), colours in one spelling."""
    out = []
    for y in range(screen.lines):
        row: list[tuple[Any, ...]] = []
        for x in range(screen.columns):
            c = screen.buffer[y][x]
            if c.data in ("", " "):
                row.append((" ", pyte_colour(c.bg), c.reverse))
            else:
                fg, bg = pyte_colour(c.fg), pyte_colour(c.bg)
                row.append((c.data, fg, bg, c.bold, c.italics, c.underscore, c.reverse))
        out.append(row)
    return out


def page_cells(tab: Tab, cols: int, rows: int) -> tuple[list[list[tuple[Any, ...]]], list[int]]:
    seen = tab.cells()
    out = []
    for line in seen["cells"][:rows]:
        row: list[tuple[Any, ...]] = []
        for chars, _width, fg, bg, bold, italic, underline, inverse in line[:cols]:
            if chars in ("", " "):
                row.append((" ", page_colour(bg), inverse))
            else:
                row.append(
                    (chars, page_colour(fg), page_colour(bg), bold, italic, underline, inverse)
                )
        out.append(row)
    return out, seen["cursor"]


def assert_page_shows(tab: Tab, truth: pyte.Screen, what: str) -> None:
    """The page's terminal shows `truth`'s screen: text, every cell, the cursor."""
    cols, rows = truth.columns, truth.lines
    size = tab.beach()
    assert size is not None and (size["cols"], size["rows"]) == (cols, rows), (what, size)
    got, cursor = page_cells(tab, cols, rows)
    want_text = text_lines(truth, cols, rows)
    got_text = ["".join(c[0] for c in row).rstrip() for row in got]
    assert got_text == want_text, f"text differs from {what}:\n" + "\n".join(
        f"{i:2} want {w!r}\n   got  {g!r}"
        for i, (w, g) in enumerate(zip(want_text, got_text, strict=True))
        if w != g
    )
    want = oracle_cells(truth)
    for y in range(rows):
        for x in range(cols):
            assert got[y][x] == want[y][x], f"cell ({x},{y}) differs from {what}"
    assert tuple(cursor) == (truth.cursor.x, truth.cursor.y), f"cursor differs from {what}"


def eventually_shows(tab: Tab, truth: Callable[[], pyte.Screen], what: str) -> None:
    """`assert_page_shows` against `truth()`, read again (the page still drawing, the host's
    recording trailing a moment) until it holds or a few seconds passed."""
    deadline = time.monotonic() + CAST_CATCH_UP
    while True:
        try:
            assert_page_shows(tab, truth(), what)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                print(tab.report())
                raise
        time.sleep(CAST_POLL)  # neither side has an event for "drawn": poll, within the deadline


LATE_SCREEN = (  # scrolls, then colours and wide characters that stay on the screen
    r"for i in $(seq 1 40); do echo line-$i; done; printf '\e[1;31mbold-red\e[0m \e[30;42m"
    r"on-green\e[0m \e[3;4mitalic-under\e[0m \e[7mreverse\e[0m\n\e[38;5;208morange\e[0m"
    r" \e[38;2;10;20;30mtruecolour\e[0m \e[95mbright\e[0m 中文 wide\n'; printf 'done-%d\n' $((7*7))"
)


def test_late_join_shows_the_current_screen(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    """A page opened after the screen was drawn shows it at once, cell for cell as the host's
    recording of its terminal and a CLI joiner show it."""
    cast = tmp_path / "session.cast"
    host, info = host_in(world, procs, tmp_path, "--record", str(cast), cols=100, rows=30)
    host.send(LATE_SCREEN + "\r")
    host.expect("done-49")
    shell_ready(host)
    cli = procs.start(
        [*world.net.exec(world.host_ns), BEACH, *info["view_join_command"][1:]], cols=100, rows=30
    )
    window = Window(cli, 100, 30)
    cli.expect("done-49")
    # The view link: the page's window (of any size) then leaves the PTY's size alone.
    tab = web.launch(world.web_ns).open(name="late", width=1400, height=900)
    join(tab, link_for(info, view=True), record_property)
    tab.wait_text("done-49")
    eventually_shows(tab, lambda: render_cast(cast), "the host's recording")
    eventually_shows(tab, window.screen, "the CLI joiner")
    host.send("exit\r")
    assert host.exit_code() == 0


def test_resizing_the_page_resizes_the_pty_by_the_smallest_window(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    host, info = host_in(world, procs, tmp_path, cols=200, rows=60)
    tab = web.launch(world.web_ns).open(name="resize", width=1000, height=700)
    join(tab, link_for(info))
    # The page's window is smaller than the host's: the PTY takes the page's size.
    cols, rows = tab.wait_for(
        "() => window.beach.terminal.cols < 200 && window.beach.terminal.rows < 60 &&"
        " [window.beach.terminal.cols, window.beach.terminal.rows]",
        "the PTY took the page's smaller size",
    )
    tab.wait_text("$ ")
    tab.type("stty size")
    assert stty_size(host) == (rows, cols)
    # The page shrinks: so does the PTY.
    tab.page.set_viewport_size({"width": 500, "height": 350})
    small_cols, small_rows = tab.wait_for(
        "([c, r]) => window.beach.terminal.cols < c && window.beach.terminal.rows < r &&"
        " [window.beach.terminal.cols, window.beach.terminal.rows]",
        "the PTY shrank with the page",
        arg=[cols, rows],
    )
    tab.type("stty size")
    assert stty_size(host) == (small_rows, small_cols)
    # The host's window goes below the page's: the host's size wins.
    host.child.setwinsize(12, 40)
    tab.wait_for(
        "() => window.beach.terminal.cols === 40 && window.beach.terminal.rows === 12",
        "the page followed the host's smaller window",
    )
    tab.type("stty size")
    assert stty_size(host) == (12, 40)
    host.send("exit\r")
    assert host.exit_code() == 0


def test_exit_status_ends_the_page(procs: Procs, tmp_path: Path, world: World, web: Browsers):
    host, info = host_in(world, procs, tmp_path)
    tab = web.launch(world.web_ns).open(name="exit")
    join(tab, link_for(info))
    tab.wait_text("$ ")
    host.send("exit 3\r")
    state = tab.wait_state("ended")
    assert (state["exitCode"], state["error"]) == (3, None), tab.report()
    assert host.exit_code() == 3


def test_closing_the_tab_tells_the_host_at_once(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    """A closed tab hangs up as it goes (pagehide): the host hears the channel close, rather
    than waiting out a silent peer, and --exit-when-last-leaves ends the session."""
    log_file = tmp_path / "host.log"
    host, info = host_in(
        world,
        procs,
        tmp_path,
        "--exit-when-last-leaves",
        global_opts=("--log-file", str(log_file), "--log-level", "info"),
    )
    tab = web.launch(world.web_ns).open(name="closed")
    join(tab, link_for(info))
    tab.wait_text("$ ")
    tab.page.close(run_before_unload=True)
    assert host.exit_code() == 0
    text = log_file.read_text()
    assert "channel closed" in text and "no sign of life" not in text, text


# Before the page's scripts: the page's first HELLO (frame type 1) on a data channel goes
# nowhere, as aiortc now and then loses a message sent the moment a channel opens.
LOSE_FIRST_MESSAGE = """
(() => {
  const send = RTCDataChannel.prototype.send;
  let lost = false;
  RTCDataChannel.prototype.send = function (data) {
    if (!lost && new Uint8Array(data)[0] === 1) { lost = true; return; }
    return send.call(this, data);
  };
})();
"""


def test_a_hello_lost_as_the_channel_opens_is_said_again(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    log_file = tmp_path / "host.log"
    host, info = host_in(
        world, procs, tmp_path, global_opts=("--log-file", str(log_file), "--log-level", "info")
    )
    tab = web.launch(world.web_ns).open(name="lost hello")
    tab.page.add_init_script(LOSE_FIRST_MESSAGE)
    join(tab, link_for(info))
    tab.wait_text("$ ")
    tab.type("echo greeted-$((6*7))")
    host.expect("greeted-42")
    assert "greeted 1.0 s after the channel opened" in log_file.read_text()
    host.send("exit\r")
    assert host.exit_code() == 0


def test_approval_keeps_the_page_waiting_until_the_host_says_yes(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    host, info = host_in(world, procs, tmp_path, "--approve")
    chromium = web.launch(world.web_ns)
    tab = chromium.open(name="approved")
    tab.goto(link_for(info))
    tab.wait_state("waiting")
    host.expect(r"read-write joiner wants to join. Let in\? \[y/N\]")
    state = tab.beach()
    assert state is not None and state["state"] == "waiting", tab.report()  # still
    host.send("y")
    tab.wait_state("connected")
    tab.wait_text("$ ")
    tab.type("echo approved-$((6*6))")
    host.expect("approved-36")
    tab.wait_text("approved-36")

    denied = chromium.open(name="denied")
    denied.goto(link_for(info, view=True))
    denied.wait_state("waiting")
    host.expect(r"view-only joiner wants to join. Let in\? \[y/N\]")
    host.send("n")
    state = denied.wait_state("ended")
    assert state["error"], denied.report()  # it says why it ended
    host.send("exit\r")
    assert host.exit_code() == 0


def test_wrong_secret_ends_with_a_clear_message(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    host, info = host_in(world, procs, tmp_path)
    chromium = web.launch(world.web_ns)
    tab = chromium.open(name="wrong secret")
    bad = dict(info, join_token=f"{info['session']}-wrong2")
    bad.pop("join_link", None)
    started = time.monotonic()
    tab.goto(link_for(bad))
    state = tab.wait_state("connected", "ended", timeout=15)
    record_property("wrong_secret_seconds", round(time.monotonic() - started, 3))
    assert state["state"] == "ended", tab.report()
    assert "token" in (state["error"] or "").lower(), tab.report()
    # The host carries on, and the right link still works.
    good = chromium.open(name="right secret")
    join(good, link_for(info))
    good.wait_text("$ ")
    good.type("echo still-$((2*21))")
    host.expect("still-42")
    host.send("exit\r")
    assert host.exit_code() == 0


def test_a_session_that_asks_for_ssh_keys_tells_the_page_how_to_join(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    """A host admitting only named SSH keys: the page (no ssh-agent) ends saying so and with
    the command that works from a terminal; the host is told, and counts no wrong guess."""
    keygen = need("ssh-keygen")
    key = tmp_path / "alice"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    log_file = tmp_path / "host.log"
    host, info = host_in(
        world,
        procs,
        tmp_path,
        "--authorized-keys",
        f"{key}.pub",
        global_opts=("--log-file", str(log_file), "--log-level", "info"),
    )
    tab = web.launch(world.web_ns).open(name="keys asked")
    tab.goto(link_for(info))
    state = tab.wait_state("connected", "ended", timeout=15)
    assert state["state"] == "ended", tab.report()
    error = state["error"] or ""
    assert "certain SSH keys" in error and "a browser cannot use" in error, tab.report()
    # The very command the host printed for a terminal.
    assert " ".join(info["join_command"]) in error, tab.report()
    shown = tab.ask("() => document.getElementById('status').textContent")
    assert "certain SSH keys" in shown
    wait_for_line(log_file, "refused: it has none of the allowed SSH keys")
    host.send("exit\r")
    assert host.exit_code() == 0
    assert "wrong" not in log_file.read_text()


def test_the_secret_never_reaches_the_server(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    """`beach serve` behind a proxy that keeps every byte it is sent, by the host and by the
    browser (the page, its scripts, the WebSocket): neither secret is anywhere in them, in the
    clear or inside a WebSocket message."""
    record = tmp_path / "proxy"
    front = recording_front(world, procs, start_serve(world, procs), record)
    host, info = start_host(
        procs,
        tmp_path,
        f"ws://{front}/ws",
        "--secret-length",
        "16",
        wrap=world.net.exec(world.host_ns),
    )
    shell_ready(host)
    tab = web.launch(world.web_ns).open(name="secret")
    join(tab, link_for(info))
    tab.wait_text("$ ")
    tab.type("echo sealed-$((3*5))")
    host.expect("sealed-15")
    secrets = [info["join_token"].rsplit("-", 1)[1], info["view_token"].rsplit("-", 1)[1]]
    assert all(secret not in tab.page.url for secret in secrets), tab.page.url
    host.send("exit\r")
    assert host.exit_code() == 0
    tab.wait_state("ended")

    seen = connections(record)
    streams = [client_stream(sent, answered) for sent, answered in seen]
    heads = [head for s in streams for head in s.heads]
    assert any(h.startswith(b"GET /j/") for h in heads), heads  # the page came through here
    browser_ws = [
        s
        for s in streams
        if any(b"upgrade: websocket" in h.lower() and b"Chrome" in h for h in s.heads)
    ]
    assert browser_ws and browser_ws[0].messages, heads  # and so did the page's WebSocket
    for message in browser_ws[0].messages:  # taken apart right: JSON text (or a close frame)
        if message[:1] == b"{":
            json.loads(message)
    for secret in secrets:
        needle = secret.encode()
        for (sent, _answered), stream in zip(seen, streams, strict=True):
            assert needle not in sent
            assert all(needle not in h for h in stream.heads)
            assert all(needle not in m for m in stream.messages)


def test_udp_blocked_falls_back_to_the_server_relay(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    world.net.block_udp(world.web_ns)  # the browser's network lets no UDP through at all
    host, info = host_in(world, procs, tmp_path)
    tab = web.launch(world.web_ns).open(name="relay")
    state = join(tab, link_for(info), record_property, timeout=RELAY_CONNECT)
    assert state["path"] == "server relay", tab.report()
    host.expect("via the server")  # and the host knows
    tab.wait_text("$ ")
    tab.type("echo relayed-$((11*11)) | tr a-z A-Z")
    host.expect("RELAYED-121")
    tab.wait_text("RELAYED-121")
    host.send("exit 6\r")
    assert tab.wait_state("ended")["exitCode"] == 6, tab.report()
    assert host.exit_code() == 6
