"""The browser joiner against a hostile world: a network that drops, a tab closed and opened
again, a server that lies, floods and reorders, and a shared program that prints the worst a
terminal can be sent. Real `beach host` processes, a real Chromium (tests/browser.py) in its
own network namespace:

    host namespace  10.77.0.1  beach host, and the hostile server (beach's own SignalServer
      |  veth                  with tamper hooks, in this process, listening in that namespace)
    web namespace   10.77.0.2  chromium

What the page must do, whatever it is sent: end with one clear line (window.beach.error) in a
bounded time, or carry on; never run markup or show control characters from the server, never
show a reject's text, never count against the host's guesses what the server reordered, and
stay responsive.
"""

# ruff: noqa: F811 (the tests take the fixtures imported from test_e2e_browser by name)
from __future__ import annotations

import asyncio
import base64
import ctypes
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientError
from aiohttp import web as aioweb
from browser import SCREEN, Browsers, Tab
from conftest import Proc, Procs, shell_ready, start_host, strip_ansi
from loop_thread import LoopThread
from netns import Net, sh
from oracle import render_cast
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_e2e_browser import (  # noqa: F401 (net, web and world are fixtures)
    HOST_ADDR,
    WEB_ADDR,
    World,
    eventually_shows,
    host_in,
    join,
    link_for,
    net,
    web,
    world,
)
from test_security import EvilServer, confirm_before_pake, kind

from beach_cli.server.app import Client
from beach_cli.wire.keyplane import payload
from beach_cli.wire.signaling import MAX_SERVER_MESSAGE_BYTES, server_message

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

LIVENESS = 4.0  # seconds of silence after which the page calls its link lost (web/src/links.js)
OUTAGE_AFTER = 3.0  # seconds the network stays down after the page would have noticed
ENDS_WITHIN = 10.0  # a page sent garbage says so within this long


def count(text: str, host_output: str) -> int:
    return strip_ansi(host_output).count(text)


# -- 1. the network drops --------------------------------------------------------------------


def wait_lost(tab: Tab, timeout: float) -> dict[str, Any]:
    """Until the page has noticed its link is gone (it is joining again)."""
    state = tab.wait_state("connecting", "ended", timeout=timeout)
    assert state["state"] == "connecting" and state["error"] is None, tab.report()
    return state


def drop_incoming(ns: str, dev: str, action: str = "-I") -> None:
    """Lose every packet arriving at `dev` in `ns` (what `ns` sends still goes out)."""
    sh(*Net.exec(ns), "iptables", action, "INPUT", "-i", dev, "-j", "DROP")


@pytest.mark.parametrize("cut", ["both ways", "host to page only"])
def test_network_drop_reconnects_and_keystrokes_arrive_once(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property, cut: str
):
    """The link goes silent for longer than the page's liveness timeout while the person types
    (before the page notices, and after). The page goes back to 'connecting', comes back by
    itself, and the shell runs every keystroke exactly once (what the status line says
    meanwhile: test_the_page_says_it_is_reconnecting).

    "host to page only": the page's keystrokes still reach the host (and run) but nothing comes
    back, not even their acknowledgement: the page must not send them again after the rejoin."""
    host, info = host_in(world, procs, tmp_path, cols=80, rows=24)
    tab = web.launch(world.web_ns).open(name=f"drop {cut}")
    join(tab, link_for(info))
    tab.wait_text("$ ")
    tab.type("echo before-$((1+0))")
    host.expect("before-1")
    tab.wait_text("before-1")

    if cut == "both ways":
        world.net.drop_all(world.host_ns, world.host_dev)  # the cable is cut: both ends unaware
    else:
        drop_incoming(world.web_ns, world.web_dev)
    cut_at = time.monotonic()
    tab.type("echo a-$((1+1))")  # the page still believes in its link
    if cut != "both ways":
        host.expect("a-2")  # it reached the shell, but the page hears nothing of it
    wait_lost(tab, LIVENESS + 6)
    noticed = time.monotonic() - cut_at
    tab.type("echo b-$((2+2))")  # typed while the page knows it has no link
    # The outage lasts a while past the page's noticing, its first rejoin stuck in it: nothing
    # to wait for but the clock.
    time.sleep(max(0.0, LIVENESS + OUTAGE_AFTER - (time.monotonic() - cut_at)))
    outage = time.monotonic() - cut_at
    if cut == "both ways":
        world.net.restore(world.host_ns, world.host_dev)
    else:
        drop_incoming(world.web_ns, world.web_dev, "-D")
    restored_at = time.monotonic()
    tab.wait_state("connected", "ended", timeout=40)
    back = time.monotonic() - restored_at
    state = tab.beach()
    assert state is not None and state["state"] == "connected", tab.report()

    host.expect("b-4")
    tab.type("echo done-$((2+3))")
    host.expect("done-5")  # anything sent twice would have run before this
    screen = tab.wait_text("done-5")
    out = host.transcript.getvalue()
    assert (count("a-2", out), count("b-4", out)) == (1, 1), strip_ansi(out)
    shown = "\n".join(screen)
    assert (shown.count("a-2"), shown.count("b-4")) == (1, 1), tab.report()
    record_property("noticed_seconds", round(noticed, 3))
    record_property("outage_seconds", round(outage, 3))
    record_property("reconnect_seconds", round(back, 3))
    print(f"\nnoticed after {noticed:.2f} s, outage {outage:.2f} s, back {back:.2f} s after")
    host.send("exit\r")
    assert tab.wait_state("ended")["exitCode"] == 0, tab.report()
    assert host.exit_code() == 0


# -- 2. the tab closes, the link opens again --------------------------------------------------


def test_closed_tab_and_the_link_opened_again_shows_the_current_screen(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    cast = tmp_path / "session.cast"
    host, info = host_in(world, procs, tmp_path, "--record", str(cast), cols=80, rows=24)
    chromium = web.launch(world.web_ns)
    first = chromium.open(name="first tab")
    join(first, link_for(info))
    first.wait_text("$ ")
    first.type("echo first-$((3*3))")
    host.expect("first-9")
    first.wait_text("first-9")
    closed = time.monotonic()
    first.page.context.close()  # the tab, and its browser context, gone without a word
    host.expect(r"left")  # the host notices the joiner went away
    record_property("host_noticed_close_seconds", round(time.monotonic() - closed, 3))
    print(f"\nthe host noticed the closed tab after {time.monotonic() - closed:.2f} s")
    host.send("echo meanwhile-$((4*4))\r")  # drawn while no page is there
    host.expect("meanwhile-16")
    shell_ready(host)

    started = time.monotonic()
    again = chromium.open(name="opened again")
    join(again, link_for(info))
    screen = again.wait_text("meanwhile-16")
    record_property("rejoin_seconds", round(time.monotonic() - started, 3))
    shown = "\n".join(screen)
    assert "first-9" in shown and "meanwhile-16" in shown, again.report()
    eventually_shows(again, lambda: render_cast(cast), "the host's recording")  # cell for cell
    again.type("echo again-$((5*5))")
    host.expect("again-25")
    again.wait_text("again-25")
    host.send("exit 4\r")
    assert again.wait_state("ended")["exitCode"] == 4, again.report()
    assert host.exit_code() == 4


def test_the_page_says_it_is_reconnecting(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    host, info = host_in(world, procs, tmp_path)
    tab = web.launch(world.web_ns).open(name="says reconnecting")
    join(tab, link_for(info))
    tab.wait_text("$ ")
    world.net.drop_all(world.host_ns, world.host_dev)
    wait_lost(tab, LIVENESS + 6)
    # As a person sees it (sampled per animation frame), for as long as the network is down.
    tab.wait_for(
        "() => /reconnecting/.test(window.beach.status)", "the status said reconnecting", 3
    )
    world.net.restore(world.host_ns, world.host_dev)
    assert tab.wait_state("connected", "ended", timeout=40)["state"] == "connected"
    host.send("exit\r")
    assert host.exit_code() == 0


# -- 3. a hostile server against the page ----------------------------------------------------

CLONE_NEWNET = 0x40000000


def listen_in(ns: str, addr: str) -> socket.socket:
    """A listening TCP socket in network namespace `ns`. Made by a thread that enters `ns`
    (setns moves only the calling thread) and then ends; the socket stays in `ns`, so a
    server in this process serves the browser's namespace."""
    made: list[socket.socket | BaseException] = []

    def enter_and_listen() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{ns}") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {ns}")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, 0))
            s.listen(128)
            s.setblocking(False)
            made.append(s)
        except BaseException as exc:  # handed to the test's thread
            made.append(exc)

    thread = threading.Thread(target=enter_and_listen)
    thread.start()
    thread.join(10)
    assert made, f"no socket in {ns}"
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


Answer = Callable[["PageServer", Client, dict[str, Any]], bool]


class PageServer(EvilServer):
    """The real server (it serves the page at /j/ too), with test_security's tamper hook on
    relayed signals, and `answer`: a hook that sees each client message first and may answer
    it itself (returning True: the real server never sees it)."""

    def __init__(self, tamper: Any = None, answer: Answer | None = None) -> None:
        super().__init__(tamper)
        self.answer = answer
        self.tasks: set[asyncio.Task[Any]] = set()

    async def _dispatch(self, client: Client, raw: str) -> None:
        if self.answer is not None:
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and self.answer(self, client, msg):
                self.received.append(raw)
                return
        await super()._dispatch(client, raw)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    def raw(client: Client, text: str) -> None:
        """Any text at all, straight into the client's outbox."""
        client.send(text)


class NsServerThread(LoopThread):
    """A PageServer on its own event loop, listening at HOST_ADDR in the host namespace."""

    def __init__(self, server: PageServer, ns: str) -> None:
        super().__init__(timeout=10.0)
        self.server = server
        sock = listen_in(ns, HOST_ADDR)
        self.port = sock.getsockname()[1]
        self.runner = self.call(self._start(sock))
        self.url = f"ws://{HOST_ADDR}:{self.port}/ws"

    async def _start(self, sock: socket.socket) -> aioweb.AppRunner:
        runner = aioweb.AppRunner(self.server.app(), access_log=None, handle_signals=False)
        await runner.setup()
        await aioweb.SockSite(runner, sock).start()
        return runner

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        super().stop()


@contextmanager
def page_server(
    world: World, tamper: Any = None, answer: Answer | None = None
) -> Iterator[NsServerThread]:
    st = NsServerThread(PageServer(tamper, answer), world.host_ns)
    try:
        yield st
    finally:
        st.stop()


def hosted_by(
    st: NsServerThread, world: World, procs: Procs, tmp_path: Path, *extra: str, **kw: Any
) -> tuple[Proc, dict]:
    """`beach host` in the host namespace, registered with the hostile server `st`."""
    host, info = start_host(
        procs, tmp_path, st.url, *extra, wrap=world.net.exec(world.host_ns), **kw
    )
    shell_ready(host)
    return host, info


# What the page's DOM and window hold once it has shown the server's words: markup never
# parsed (no element but the page's own), no script run, no CSP violation, no control
# character in the status line.
DOM_CHECK = """() => ({
  imgs: document.querySelectorAll('img, iframe, script:not([src]), object, embed').length,
  statusChildren: document.getElementById('status').children.length,
  statusText: document.getElementById('status').textContent,
  pwned: typeof window.pwned,
  violations: window.cspViolations || [],
  title: document.title,
})"""
WATCH_CSP = """document.addEventListener('securitypolicyviolation', (e) => {
  (window.cspViolations = window.cspViolations || []).push(e.violatedDirective);
});"""
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
HTML = "<img src=x onerror=window.pwned=1><script>window.pwned=2</script>"
ESCAPES = "\x1b]0;owned\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b[31mred\r\nPassword: \x9b1m"


def open_watched(chromium: Any, name: str) -> Tab:
    tab = chromium.open(name=name)
    tab.page.add_init_script(WATCH_CSP)
    return tab


def assert_shown_as_text(tab: Tab, session: str) -> dict[str, Any]:
    state = tab.beach()
    assert state is not None
    dom = tab.js(DOM_CHECK)
    assert dom["imgs"] == 0 and dom["statusChildren"] == 0, (dom, tab.report())
    assert dom["pwned"] == "undefined" and dom["violations"] == [], (dom, tab.report())
    assert dom["statusText"] == state["status"], (dom, state)
    assert dom["title"] == f"beach: {session}", dom  # OSC 0 in the text set no title
    for text in (state["status"], state["error"] or ""):
        assert not CONTROLS.search(text), (text, tab.report())
        assert "\n" not in text
    assert not any(line.strip() for line in tab.screen()), tab.report()  # nothing drawn
    return state


@pytest.mark.parametrize("when", ["join", "pake"])
def test_server_error_with_markup_and_escapes_is_shown_as_text(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, when: str
):
    """The server's `error` (in answer to the join, or in place of the host's key exchange)
    holds markup and terminal escapes: the page ends, showing them as inert text."""
    text = (HTML + ESCAPES)[:500]

    def answer(srv: PageServer, client: Client, msg: dict[str, Any]) -> bool:
        if client.session is not None and client.peer_id is None:
            return False  # the host: honest service
        if msg.get("type") == "join" and when == "join":
            srv.raw(client, server_message("error", code="nope", message=text))
            return True
        if msg.get("type") == "signal" and msg["data"].get("k") == "pake" and when == "pake":
            srv.raw(client, server_message("error", code="unknown_session", message=text))
            return True
        return False

    with page_server(world, answer=answer) as st:
        host, info = hosted_by(st, world, procs, tmp_path)
        tab = open_watched(web.launch(world.web_ns), f"error at {when}")
        started = time.monotonic()
        tab.goto(link_for(info))
        state = tab.wait_state("ended", timeout=ENDS_WITHIN)
        print(f"\nended {time.monotonic() - started:.3f} s after the link opened: {state}")
        state = assert_shown_as_text(tab, info["session"])
        assert state["error"] and state["exitCode"] is None, tab.report()
        assert "<img src=x" in state["status"], tab.report()  # the words, as text
        host.send("exit\r")
        assert host.exit_code() == 0


def test_server_error_of_an_unknown_code_is_attributed_to_the_server(
    procs: Procs, tmp_path: Path, world: World, web: Browsers
):
    def answer(srv: PageServer, client: Client, msg: dict[str, Any]) -> bool:
        if msg.get("type") == "join":
            srv.raw(
                client, server_message("error", code="nope", message="update beach at x.example")
            )
            return True
        return False

    with page_server(world, answer=answer) as st:
        host, info = hosted_by(st, world, procs, tmp_path)
        tab = web.launch(world.web_ns).open(name="unknown code")
        tab.goto(link_for(info))
        state = tab.wait_state("ended", timeout=ENDS_WITHIN)
        assert "the server said: update beach" in (state["error"] or ""), tab.report()
        host.send("exit\r")
        assert host.exit_code() == 0


GENERIC_REFUSAL = "the host refused this join attempt"


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param((HTML + ESCAPES)[:200], id="markup-and-escapes"),
        pytest.param("wrong token ", id="near-a-known-code"),
        pytest.param("constructor", id="constructor"),
        pytest.param("__proto__", id="__proto__"),
        pytest.param("toString", id="toString"),
    ],
)
def test_forged_reject_shows_only_its_generic_meaning(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, reason: str
):
    """The server answers the page's key exchange with a `reject` of a code no version knows:
    the page says only that the host refused, never the reason's text."""

    def forge(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any] | None:
        if client.peer_id is not None and kind(msg) == "pake":
            data = payload("reject", reason=reason)
            client.send(server_message("signal", **{"from": "host"}, data=data))
            return None  # the host never hears of this attempt
        return msg

    with page_server(world, tamper=forge) as st:
        host, info = hosted_by(st, world, procs, tmp_path)
        tab = open_watched(web.launch(world.web_ns), f"reject {reason[:12]!r}")
        tab.goto(link_for(info))
        state = tab.wait_state("ended", timeout=ENDS_WITHIN)
        assert_shown_as_text(tab, info["session"])
        assert state["error"] == GENERIC_REFUSAL, tab.report()
        assert state["status"] == f"beach: {GENERIC_REFUSAL}", tab.report()
        host.send("exit\r")
        assert host.exit_code() == 0


def malformed(sid: str) -> dict[str, str | bytes]:
    """Messages no honest server sends, by what is wrong with them."""
    joined = {"type": "joined", "v": 1, "session": sid, "peer": "abcdefgh"}
    return {
        "not JSON": '{"type": "joined", "v": 1,',
        "not an object": '["joined", 1]',
        "over 65 KiB + 1024": json.dumps(
            {"type": "error", "v": 1, "code": "x", "message": "x" * MAX_SERVER_MESSAGE_BYTES}
        ),
        "an unknown type": '{"type": "surprise", "v": 1}',
        "a host's message": json.dumps(
            {"type": "registered", "v": 1, "session": sid, "reclaim": "x"}
        ),
        "a wrong version": json.dumps({**joined, "v": 2}),
        "a malformed field": json.dumps({**joined, "peer": "../../etc"}),
        "binary": json.dumps(joined).encode(),
    }


def test_malformed_server_messages_end_the_page_with_one_clear_line(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    """The server answers the page's join with garbage of each kind, one tab each: every tab
    ends (error set) with one printable line about the server, within ENDS_WITHIN."""
    now: dict[str, str | bytes] = {}

    def answer(srv: PageServer, client: Client, msg: dict[str, Any]) -> bool:
        if msg.get("type") != "join":
            return False
        bad = now["message"]
        if isinstance(bad, bytes):
            srv.spawn(client.ws.send_bytes(bad))
        else:
            srv.raw(client, bad)
        return True

    with page_server(world, answer=answer) as st:
        host, info = hosted_by(st, world, procs, tmp_path)
        chromium = web.launch(world.web_ns)
        problems, seconds = [], {}
        for what, message in malformed(info["session"]).items():
            now["message"] = message
            tab = chromium.open(name=what)
            tab.goto(link_for(info))
            started = time.monotonic()
            state = tab.wait_state("ended", timeout=ENDS_WITHIN)
            seconds[what] = round(time.monotonic() - started, 3)
            error, status = state["error"] or "", state["status"]
            if not error or "server" not in error or status != f"beach: {error}":
                problems.append(f"{what}: {state}")
            elif CONTROLS.search(status) or len(status) > 300:
                problems.append(f"{what}: not one printable line: {status!r}")
            print(f"\n{what}: {seconds[what]:.3f} s: {status}")
            tab.page.context.close()
        record_property("ended_seconds", json.dumps(seconds))
        assert not problems, "\n".join(problems)
        host.send("exit\r")
        assert host.exit_code() == 0


FLOOD = 10_000


def heap_mb(tab: Tab) -> float:
    """The page's JavaScript heap in use after a full garbage collection, in MB (DevTools)."""
    cdp = tab.page.context.new_cdp_session(tab.page)
    try:
        cdp.send("HeapProfiler.collectGarbage")
        return float(cdp.send("Runtime.getHeapUsage")["usedSize"]) / 1e6
    finally:
        cdp.detach()


def answers_at_once(tab: Tab) -> float:
    """How long the page takes to run a trivial script (a frozen page fails, in ASK_TIMEOUT)."""
    started = time.monotonic()
    assert tab.ask("() => 6 * 7") == 42
    return time.monotonic() - started


def flood_of(peer: str, size: int) -> list[str]:
    """FLOOD well-formed `signal` messages from the host, each a valid sealed payload."""
    c = base64.b64encode(bytes(size)).decode()
    return [
        server_message("signal", **{"from": peer}, data=payload("sealed", n=n, c=c))
        for n in range(FLOOD)
    ]


async def send_all(client: Client, messages: list[str]) -> int:
    """Straight onto the socket (the client's outbox would drop it past 256 messages), until
    all are sent or the other end hangs up; returns how many were sent."""
    for sent, text in enumerate(messages):
        try:
            await client.ws.send_str(text)
        except (ConnectionError, ClientError):
            return sent
    return len(messages)


def test_signal_flood_during_the_handshake_ends_the_page(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    """Right behind the host's sealed offer the server sends 10,000 signals nobody asked for,
    while the page is busy answering the offer: the page ends (it queues at most 256, and a
    signal out of its step is a security failure), in a bounded time, its memory bounded."""
    flooded: list[int] = []  # how many messages went out before the page hung up
    done = threading.Event()

    def flood(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any] | None:
        if client.peer_id is None and kind(msg) == "sealed" and not srv.state.get("flooded"):
            srv.state["flooded"] = True
            assert client.session is not None
            page = srv.sessions[client.session.id].peers[msg["to"]]
            offer = server_message("signal", **{"from": "host"}, data=msg["data"])

            async def go() -> None:
                flooded.append(await send_all(page, [offer, *flood_of("host", 64)]))
                done.set()

            assert isinstance(srv, PageServer)
            srv.spawn(go())
            return None
        return msg

    with page_server(world, tamper=flood) as st:
        host, info = hosted_by(st, world, procs, tmp_path)
        tab = web.launch(world.web_ns).open(name="flooded handshake")
        tab.goto(link_for(info))
        before = heap_mb(tab)
        started = time.monotonic()
        state = tab.wait_state("connected", "ended", timeout=ENDS_WITHIN + 10)
        took = time.monotonic() - started
        assert done.wait(10), "the server never flooded"
        assert state["state"] == "ended" and state["error"], tab.report()
        assert not CONTROLS.search(state["status"]), tab.report()
        grew = heap_mb(tab) - before
        responds = answers_at_once(tab)
        print(f"\nended after {took:.3f} s ({flooded[0] - 1} of the flood sent by then):")
        print(f"{state['error']}; heap +{grew:.1f} MB")
        record_property("ended_seconds", round(took, 3))
        record_property("heap_growth_mb", round(grew, 1))
        assert grew < 16 and responds < 1, (grew, responds)
        host.send("exit\r")
        assert host.exit_code() == 0


def test_signal_flood_on_the_server_relay_is_ignored(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    """The page is connected through the server relay (no UDP); the server then sends it
    10,000 signals of 8 KiB each (80 MB) that mean nothing on a relayed link. The page drops
    each as it comes: still connected, still typing, its heap no larger."""
    world.net.block_udp(world.web_ns)
    with page_server(world) as st:
        host, info = hosted_by(st, world, procs, tmp_path)
        tab = web.launch(world.web_ns).open(name="flooded relay")
        state = join(tab, link_for(info), timeout=40)
        assert state["path"] == "server relay", tab.report()
        tab.wait_text("$ ")
        before = heap_mb(tab)
        (page,) = st.server.sessions[info["session"]].peers.values()
        started = time.monotonic()
        st.call(send_all(page, flood_of("host", 6 * 1024)), timeout=120)
        sent = time.monotonic() - started
        tab.type("echo after-$((9*9))")  # its output is relayed behind the whole flood
        host.expect("after-81")
        tab.wait_text("after-81")
        drained = time.monotonic() - started
        now = tab.beach()
        assert now is not None and now["state"] == "connected", tab.report()
        assert "lost" not in now["status"], tab.report()
        grew = heap_mb(tab) - before
        responds = answers_at_once(tab)
        print(f"\nflood sent in {sent:.2f} s, drained in {drained:.2f} s; heap +{grew:.1f} MB")
        record_property("flood_drained_seconds", round(drained, 3))
        record_property("heap_growth_mb", round(grew, 1))
        assert grew < 16 and responds < 1, (grew, responds)
        host.send("exit\r")
        assert tab.wait_state("ended")["exitCode"] == 0, tab.report()
        assert host.exit_code() == 0


def test_reordered_handshake_is_a_security_error_and_costs_no_guess(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property
):
    """The server holds the host's SPAKE2 message and delivers its key confirmation first (as
    test_hostile_output does to the CLI). The page ends with a security error that names the
    server; it still proves the key to the host, so the host counts no wrong guess: with
    --guess-limit 1 a single one would replace the token, and the next join with the same
    link would fail. It does not, and is not held."""
    log = tmp_path / "host.log"

    with page_server(world, tamper=confirm_before_pake) as st:
        host, info = hosted_by(
            st,
            world,
            procs,
            tmp_path,
            "--guess-limit",
            "1",
            global_opts=("--log-file", str(log), "--log-level", "info"),
        )
        chromium = web.launch(world.web_ns)
        tab = chromium.open(name="reordered")
        tab.goto(link_for(info))
        state = tab.wait_state("connected", "ended", timeout=ENDS_WITHIN)
        assert st.server.state.get("done"), "the server never reordered"
        error = state["error"] or ""
        assert state["state"] == "ended" and "out of order" in error, tab.report()
        assert "server" in error and "token" not in error, tab.report()
        # The host has the page's confirmation: the attempt ends as a good key, never a guess.

        good = chromium.open(name="after the reorder")
        started = time.monotonic()
        join(good, link_for(info), timeout=15)
        took = time.monotonic() - started
        record_property("rejoin_seconds", round(took, 3))
        assert took < 5, f"the right join was held ({took:.1f} s)\n{good.report()}"
        good.wait_text("$ ")
        good.type("echo trusted-$((8*8))")
        host.expect("trusted-64")
        host.send("exit\r")
        assert host.exit_code() == 0
        out = strip_ansi(host.transcript.getvalue())
        assert "wrong token" not in out and "new read-write token" not in out, out
        assert "wrong token" not in log.read_text()


# -- 4. hostile output from the shared program -----------------------------------------------

PTY = (80, 24)
DIGITS = 5000  # a parameter longer than any int() takes (4300 digits)
HUGE = b"999999999"
CLEAR = b"\x1b[H\x1b[2J"
MARK = b"\x1b[22;1H\x1b[2KMARK-" + b"END\r\n"  # row 21; typed as two words, never echoed whole
BURST_BYTES = 20 * 1024 * 1024
BURST_LINE = 74  # bytes: seven digits, a space, 64 hex digits, CR LF
RESPONSIVE = 2.0  # seconds: the longest the page may take to run a trivial script


def burst_line(i: int) -> str:
    return f"{i:07d} {hashlib.sha256(str(i).encode()).hexdigest()}"


# The shared program: prints `ready`, then for each word typed the piece of that name (a file in
# argv[1]) and MARK, or for `burst` 20 MB of numbered lines, or `echo:<word>`; `quit` ends it.
PROGRAM = (
    "import hashlib, os, sys\n"
    "w = sys.stdout.buffer.write\n"
    "w(b'ready\\r\\n'); sys.stdout.flush()\n"
    "for line in sys.stdin:\n"
    "    word = line.strip()\n"
    "    path = os.path.join(sys.argv[1], word)\n"
    "    if word == 'quit':\n"
    "        break\n"
    "    if word == 'burst':\n"
    f"        for i in range({BURST_BYTES // BURST_LINE + 1}):\n"
    "            w(b'%07d %s\\r\\n' % (i, hashlib.sha256(str(i).encode()).hexdigest().encode()))\n"
    f"        w({MARK!r})\n"
    "    elif word and os.path.isfile(path):\n"
    "        with open(path, 'rb') as f:\n"
    "            w(f.read())\n"
    f"        w({MARK!r})\n"
    "    else:\n"
    "        w(b'echo:' + word.encode() + b'\\r\\n')\n"
    "    sys.stdout.flush()\n"
)

# Each piece, and the rows (0-based) it leaves on an 80x24 screen; every other row is blank.
PIECES: dict[str, tuple[bytes, dict[int, str]]] = {
    "params": (  # parameters of 5000 digits (a terminal clamps them; int() would raise)
        CLEAR
        + b"A\x1b[" + b"7" * DIGITS + b"CY\r\n"  # forward: Y on the last column
        + b"\x1b[" + b"9" * DIGITS + b"r\x1b[r"  # a scroll region of a 5000-digit top
        + b"\x1b[" + b"3" * DIGITS + b";" + b"2" * DIGITS + b"HC"  # the bottom-right cell
        + b"\x1b[5;10HD\x1b[" + b"4" * DIGITS + b"DW"  # back past the left edge
        + b"\x1b[9;1HFFFFF\x1b[9;3H\x1b[" + b"6" * DIGITS + b"X"  # erase to the edge
        + b"\x1b[11;1H\x1b[" + b"1" * DIGITS + b"mG\x1b[0m"  # a 5000-digit SGR
        + b"\x1b[13;1HHHHHH\x1b[13;2H\x1b[" + b"5" * DIGITS + b"P",  # delete to the edge
        {
            0: "A" + " " * 78 + "Y",
            4: "W" + " " * 8 + "D",
            8: "FF",
            10: "G",
            12: "H",
            21: "MARK-END",
            23: " " * 79 + "C",
        },
    ),
    "rep": (  # CSI 999999999 b: repeat the last character, autowrap off (one row)
        CLEAR
        + b"\x1b[3;1HZ\x1b[100b|"  # a small repeat: fills the row, wraps
        + b"\x1b[?7l\x1b[6;1HR\x1b[" + HUGE + b"b\x1b[?7h",
        {2: "Z" * 80, 3: "Z" * 21 + "|", 5: "R" * 80, 21: "MARK-END"},
    ),
    "rep-wrap": (
        # With autowrap: the screen fills and scrolls; the last Z lands on the last column
        # ((1 + 999999999 - 1) mod 80 = 79), so the | wraps onto a row of its own.
        CLEAR + b"\x1b[3;1HZ\x1b[" + HUGE + b"b|",
        {**{y: "Z" * 80 for y in range(23)}, 21: "MARK-END", 23: "|"},
    ),
    "tabs": (  # tab forward and back a billion times: they stop at the edges
        CLEAR + b"B\x1b[" + HUGE + b"IX\x1b[3;10H\x1b[" + HUGE + b"ZE",
        {0: "B" + " " * 78 + "X", 2: "E", 21: "MARK-END"},
    ),
    "lines": (  # insert, delete, scroll up and down a billion lines: the screen empties
        CLEAR
        + b"keep\x1b[5;1Hgone-il\x1b[3;1H\x1b[" + HUGE + b"L"
        + b"\x1b[6;1Hgone-dl\x1b[4;1H\x1b[" + HUGE + b"M"
        + b"\x1b[10;1Hgone-su\x1b[" + HUGE + b"S"
        + b"\x1b[12;1Hgone-sd\x1b[" + HUGE + b"T"
        + b"\x1b[2;1Hlines-done",
        {1: "lines-done", 21: "MARK-END"},
    ),
    "title": (
        CLEAR
        + b"\x1b]0;" + b"t" * 1_000_000 + b"\x07"  # a 1 MB title
        + b"\x1b]2;" + b"u" * 1_000_000 + b"\x1b\\"  # and another, ended by ST
        + b"\x1b[2;1Htitle-done",
        {1: "title-done", 21: "MARK-END"},
    ),
}  # fmt: skip


def expected_burst() -> dict[int, str]:
    last = BURST_BYTES // BURST_LINE  # the last line's number
    rows = {y: burst_line(last - 22 + y) for y in range(23)}
    rows[21] = "MARK-END"
    return rows


def assert_rows(tab: Tab, rows: dict[int, str], what: str) -> None:
    want = [rows.get(y, "") for y in range(PTY[1])]
    got = tab.ask(SCREEN)
    assert got == want, f"{what}: the screen differs:\n" + "\n".join(
        f"{y:2} want {w!r}\n   got  {g!r}"
        for y, (w, g) in enumerate(zip(want, got, strict=True))
        if w != g
    )


def shows_while_responsive(tab: Tab, text: str, timeout: float) -> float:
    """Wait until `text` is on the screen, checking meanwhile that the page keeps answering
    (a frozen page fails at once rather than after `timeout`); the slowest answer."""
    deadline = time.monotonic() + timeout
    slowest = 0.0
    while True:
        slowest = max(slowest, answers_at_once(tab))
        assert slowest < RESPONSIVE, f"the page stopped answering for {slowest:.1f} s"
        try:
            with tab.watchdog(1, f"waiting for {text!r}"):
                tab.page.wait_for_function(
                    f"(text) => ({SCREEN})().join('\\n').includes(text)", arg=text, timeout=1000
                )
            return slowest
        except PlaywrightTimeout:
            assert time.monotonic() < deadline, f"{text!r} never showed\n{tab.report()}"


def hostile_host(procs: Procs, tmp_path: Path, world: World) -> tuple[Proc, dict]:
    """`beach host` of PROGRAM, 80x24, its terminal read fast (it is sent megabytes)."""
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    for name, (data, _rows) in PIECES.items():
        (pieces / name).write_bytes(data)
    host, info = start_host(
        procs,
        tmp_path,
        None,
        command=[sys.executable, "-c", PROGRAM, str(pieces)],
        global_opts=("--log-file", str(tmp_path / "host.log"), "--log-level", "info"),
        wrap=world.net.exec(world.host_ns),
        cols=PTY[0],
        rows=PTY[1],
        maxread=65536,
        searchwindowsize=4096,
    )
    host.expect("ready")
    return host, info


def open_80x24(chromium: Any, link: str, name: str) -> Tab:
    """A page larger than the PTY: it takes the PTY's 80x24, so its screen is the PTY's."""
    tab = chromium.open(name=name, width=1400, height=900)
    join(tab, link, timeout=15)
    tab.wait_for(
        "() => window.beach.terminal.cols === 80 && window.beach.terminal.rows === 24",
        "the page took the PTY's 80x24",
    )
    return tab


def keeps_typing_and_ends(host: Proc, writer: Tab, *tabs: Tab) -> None:
    writer.type("still-typing")
    host.expect("echo:still-typing")
    for tab in (writer, *tabs):
        shows_while_responsive(tab, "echo:still-typing", 30)
    writer.type("quit")
    for tab in (writer, *tabs):
        state = tab.wait_state("ended")
        assert (state["exitCode"], state["error"]) == (0, None), tab.report()
    assert host.exit_code() == 0


def pieces() -> list[str]:
    return [*PIECES, "burst"]


@pytest.mark.parametrize("piece", pieces())
def test_hostile_output_live_leaves_the_page_responsive(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property, piece: str
):
    """The shared program prints a piece of hostile output to a page already connected: the
    page answers within RESPONSIVE all along, shows the right screen, keeps taking
    keystrokes, and ends normally on exit."""
    rows = expected_burst() if piece == "burst" else PIECES[piece][1]
    host, info = hostile_host(procs, tmp_path, world)
    live = open_80x24(web.launch(world.web_ns), link_for(info), f"{piece} live")
    live.wait_text("ready")

    started = time.monotonic()
    live.type(piece)
    slowest = 0.0
    while not host.read_for(0.2, until="MARK-END"):  # the host's terminal is read all along
        assert time.monotonic() - started < 120, "the host never got through the piece"
        slowest = max(slowest, answers_at_once(live))
        assert slowest < RESPONSIVE, f"the page stopped answering for {slowest:.1f} s"
    host_done = time.monotonic() - started
    slowest = max(slowest, shows_while_responsive(live, "MARK-END", 60))
    shown = time.monotonic() - started
    print(
        f"\n{piece}: host through in {host_done:.2f} s, page {shown:.2f} s, "
        f"slowest answer {slowest:.3f} s"
    )
    record_property("host_seconds", round(host_done, 3))
    record_property("page_seconds", round(shown, 3))
    record_property("slowest_answer_seconds", round(slowest, 3))
    assert_rows(live, rows, "the page")
    assert live.ask("() => document.title") == f"beach: {info['session']}"
    keeps_typing_and_ends(host, live)


@pytest.mark.parametrize("piece", pieces())
def test_hostile_output_replayed_to_a_page_opened_later(
    procs: Procs, tmp_path: Path, world: World, web: Browsers, record_property, piece: str
):
    """The piece is printed before any page is there; a page opened afterwards gets it in the
    host's fresh screen (its output since the last clear, replayed): the same screen, the
    same responsiveness."""
    rows = expected_burst() if piece == "burst" else PIECES[piece][1]
    host, info = hostile_host(procs, tmp_path, world)
    host.send(f"{piece}\r")
    assert host.read_for(120, until="MARK-END"), "the host never got through the piece"
    chromium = web.launch(world.web_ns)
    started = time.monotonic()
    late = open_80x24(chromium, link_for(info, view=True), f"{piece} late")
    slowest = shows_while_responsive(late, "MARK-END", 15)
    record_property("link_to_screen_seconds", round(time.monotonic() - started, 3))
    record_property("slowest_answer_seconds", round(slowest, 3))
    assert_rows(late, rows, "the page opened after it")
    writer = open_80x24(chromium, link_for(info), f"{piece} writer")
    keeps_typing_and_ends(host, writer, late)
