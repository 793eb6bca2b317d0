"""A real headless Chromium (Debian's, never a downloaded one) in a network namespace, driven by
playwright's sync API.

Chromium gathers ICE candidates only on the interface of the default route (without a camera or
microphone permission it does not enumerate interfaces; it asks the routing table which address
would reach the internet). So a namespace with only loopback, or with a veth but no default
route, gathers no candidates at all and ends its gathering at once: the browser's namespace
needs a veth to the other peer's and a default route over it.

Playwright launches the browser over pipes (fds 3 and 4); `ip netns exec` keeps them across its
exec, so the executable playwright starts is a two-line script that execs Chromium inside the
namespace.

`Tab` wraps a playwright Page: everything the page logs (console, uncaught errors, failed
requests, crashes) is kept and shown with any failed wait, and in the test's report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from conftest import TIMEOUT, need

# Whatever starts playwright here must never fetch a browser of its own (there is no internet,
# and the test is of Debian's chromium).
os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"

from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking ones Chromium keeps trying to reach the internet.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAUNCH_TIMEOUT = 30.0  # seconds: the browser's start, even on a busy 2-core machine
ASK_TIMEOUT = 5.0  # seconds for a page to run a trivial script (reading its state)
# Playwright's own timeouts need the page to answer: a wait that began before the page's main
# thread froze returns only when it thaws (an hour later, for some output). A call still
# blocked this long past its own timeout kills the browser, which ends the call at once.
WATCHDOG_GRACE = 5.0

# The page's window.beach, as plain data (its terminal reduced to its size).
BEACH_STATE = """() => {
  const b = window.beach;
  if (!b) return null;
  const t = b.terminal;
  return {state: b.state, exitCode: b.exitCode, path: b.path, error: b.error, status: b.status,
          cols: t ? t.cols : null, rows: t ? t.rows : null};
}"""

# The terminal's visible screen, one string per row, read from xterm.js's buffer (the WebGL or
# DOM renderer's output is not text a test can trust).
SCREEN = """() => {
  const buf = window.beach.terminal.buffer.active, rows = window.beach.terminal.rows;
  const out = [];
  for (let y = 0; y < rows; y++) {
    const line = buf.getLine(buf.viewportY + y);
    out.push(line ? line.translateToString(true) : '');
  }
  return out;
}"""

# The same rows cell by cell: [chars, width, fg, bg, bold, italic, underline, inverse], colours
# as ['default'] / ['palette', n] / ['rgb', 0xRRGGBB].
CELLS = """() => {
  const buf = window.beach.terminal.buffer.active, term = window.beach.terminal;
  const colour = (cell, fg) => {
    if (fg ? cell.isFgDefault() : cell.isBgDefault()) return ['default'];
    const value = fg ? cell.getFgColor() : cell.getBgColor();
    return (fg ? cell.isFgPalette() : cell.isBgPalette()) ? ['palette', value] : ['rgb', value];
  };
  const out = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buf.getLine(buf.viewportY + y), row = [];
    for (let x = 0; x < term.cols; x++) {
      const c = line.getCell(x);
      row.push([c.getChars(), c.getWidth(), colour(c, true), colour(c, false), !!c.isBold(),
                !!c.isItalic(), !!c.isUnderline(), !!c.isInverse()]);
    }
    out.push(row);
  }
  return {cells: out, cursor: [buf.cursorX, buf.cursorY]};
}"""


class Tab:
    """One page in its own browser context (a fresh profile's worth of state)."""

    def __init__(self, page: Page, name: str, kill: Callable[[], None] = lambda: None) -> None:
        self.page = page
        self.name = name
        self._kill = kill  # the browser's, for a page that froze
        self.froze: str | None = None  # what it was doing when the watchdog killed the browser
        self.events: list[str] = []
        self.errors: list[str] = []  # uncaught exceptions: a bug in the page, whatever the test
        self.load_seconds: float | None = None
        started = time.monotonic()
        self._t0 = started
        page.set_default_timeout(TIMEOUT * 1000)
        page.on("console", self._console)
        page.on("pageerror", self._error)
        page.on("crash", lambda _p: self._note("page crashed"))
        page.on(
            "response",
            lambda r: (
                self._note(f"HTTP {r.status} {r.request.method} {r.url}")
                if r.status >= 400
                else None
            ),
        )
        page.on(
            "requestfailed",
            lambda r: self._note(f"request failed: {r.method} {r.url} ({r.failure})"),
        )

    def _note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self._t0:7.3f} {text}")

    def _error(self, error: Exception) -> None:
        self.errors.append(str(error))
        self._note(f"pageerror: {error}")

    def _console(self, msg: ConsoleMessage) -> None:
        self._note(f"console.{msg.type}: {msg.text}")

    def log(self) -> str:
        return f"--- {self.name}: what the page said ---\n" + "\n".join(
            self.events or ["(nothing)"]
        )

    def goto(self, url: str, timeout: float = TIMEOUT) -> None:
        started = time.monotonic()
        self._note(f"goto {url.split('#')[0]}")
        try:
            response = self.page.goto(url, wait_until="load", timeout=timeout * 1000)
        except PlaywrightError as e:
            raise AssertionError(f"{url.split('#')[0]} did not load: {e}\n{self.log()}") from e
        if response is not None and not response.ok:
            raise AssertionError(f"{url.split('#')[0]} answered {response.status}\n{self.log()}")
        self.load_seconds = time.monotonic() - started

    @contextmanager
    def watchdog(self, seconds: float, what: str) -> Iterator[None]:
        """Kill the browser if the block is still running `seconds` + WATCHDOG_GRACE from now
        (a frozen page); the block's playwright call then fails, and this says why."""

        def bite() -> None:
            self.froze = (
                f"{what}: the page's main thread was frozen for {seconds + WATCHDOG_GRACE:.0f} s"
            )
            self._note(f"watchdog: {self.froze}; browser killed")
            self._kill()

        timer = threading.Timer(seconds + WATCHDOG_GRACE, bite)
        timer.daemon = True
        timer.start()
        try:
            yield
        except PlaywrightError as e:
            if self.froze is not None:
                raise AssertionError(f"{self.name}: {self.froze}\n{self.log()}") from e
            raise
        finally:
            timer.cancel()

    def js(self, expression: str, arg: Any = None) -> Any:
        with self.watchdog(ASK_TIMEOUT, "evaluate"):
            return self.page.evaluate(expression, arg)

    def ask(self, expression: str, arg: Any = None, timeout: float = ASK_TIMEOUT) -> Any:
        """`js`, but bounded: page.evaluate waits as long as the page's main thread is busy (a
        frozen page: forever), this gives up after `timeout` s with an AssertionError."""
        # The answer comes back as a (never empty, so truthy) JSON string: a primitive travels
        # with the handle, where reading an object's value would ask the page once more.
        try:
            with self.watchdog(timeout, "a script"):
                handle = self.page.wait_for_function(
                    f"(arg) => JSON.stringify([({expression})(arg)])",
                    arg=arg,
                    timeout=timeout * 1000,
                )
        except PlaywrightTimeout:
            raise AssertionError(f"{self.name}: the page did not answer in {timeout} s") from None
        return json.loads(handle.json_value())[0]

    def beach(self) -> dict[str, Any] | None:
        """The page's window.beach as plain data, or None before the page set it up."""
        return self.js(BEACH_STATE)

    def wait_for(self, predicate: str, what: str, timeout: float = TIMEOUT, arg: Any = None) -> Any:
        """Wait (in the page, per animation frame) until the JS function `predicate` returns
        something truthy; returns that. A timeout says what was awaited and what the page
        showed and said."""
        try:
            with self.watchdog(timeout, what):
                handle = self.page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000)
        except PlaywrightTimeout:
            raise AssertionError(
                f"{self.name}: {what} within {timeout} s\n{self.report()}"
            ) from None
        return handle.json_value()

    def wait_state(self, *states: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        self.wait_for(
            "(states) => window.beach && states.includes(window.beach.state)",
            f"state became one of {states}",
            timeout,
            list(states),
        )
        state = self.beach()
        assert state is not None
        return state

    def screen(self) -> list[str]:
        return self.js(SCREEN)

    def cells(self) -> dict[str, Any]:
        return self.js(CELLS)

    def wait_text(self, text: str, timeout: float = TIMEOUT) -> list[str]:
        """Wait until `text` shows on the terminal's screen; returns the screen."""
        self.wait_for(
            f"(text) => window.beach && window.beach.terminal && ({SCREEN})().join('\\n')"
            ".includes(text)",
            f"{text!r} showed on the terminal",
            timeout,
            text,
        )
        return self.screen()

    def type(self, text: str, enter: bool = True) -> None:
        """Type as a person would, into the focused terminal."""
        self.js("() => window.beach.terminal.focus()")
        with self.watchdog(TIMEOUT, f"typing {text!r}"):  # each key waits for the page
            self.page.keyboard.type(text)
            if enter:
                self.page.keyboard.press("Enter")

    def report(self) -> str:
        try:  # bounded: a report is most needed from a page that froze
            state: Any = self.ask(BEACH_STATE)
            lines = self.ask(SCREEN) if state and state.get("rows") else []
            while lines and not lines[-1]:
                lines.pop()  # the blank rows below the text say nothing
            screen = "\n".join(f"  |{line}" for line in lines) or "  (blank)"
        except (PlaywrightError, AssertionError) as e:
            state, screen = f"unreadable ({e})", "  (unreadable)"
        return f"window.beach: {json.dumps(state)}\nscreen:\n{screen}\n{self.log()}"


class Chromium:
    """One Chromium process inside a network namespace; `open` gives it tabs."""

    def __init__(self, pw: Playwright, ns: str, workdir: Path) -> None:
        chromium = need("chromium")  # under CI a missing browser fails the test
        routes = subprocess.run(
            ["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True, timeout=10
        )
        if not routes.stdout.strip():
            raise AssertionError(f"{ns} has no default route: Chromium would gather no candidates")
        workdir.mkdir(parents=True, exist_ok=True)
        wrapper = workdir / "chromium-in-netns"
        # pipes and fds survive exec, so playwright's --remote-debugging-pipe still works
        # ip netns exec execs (no fork): the pid written here is the browser's own.
        self._pidfile = workdir / "chromium.pid"
        wrapper.write_text(
            f'#!/bin/sh\necho $$ > {self._pidfile}\nexec ip netns exec {ns} {chromium} "$@"\n'
        )
        wrapper.chmod(0o755)
        home = workdir / "home"  # the browser writes nothing into the real home directory
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
        }
        self.ns = ns
        self.tabs: list[Tab] = []
        started = time.monotonic()
        self.browser: Browser = pw.chromium.launch(
            executable_path=str(wrapper),
            args=FLAGS,
            headless=True,
            env=env,
            timeout=LAUNCH_TIMEOUT * 1000,
        )
        self.launch_seconds = time.monotonic() - started

    def open(
        self, url: str | None = None, *, width: int = 1000, height: int = 700, name: str = ""
    ) -> Tab:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        tab = Tab(context.new_page(), name or f"tab {len(self.tabs) + 1} in {self.ns}", self.kill)
        self.tabs.append(tab)
        if url is not None:
            tab.goto(url)
        return tab

    def logs(self) -> str:
        return "\n".join(t.log() for t in self.tabs)

    def kill(self) -> None:
        """SIGKILL the browser (by the pid its wrapper wrote): for a page that froze."""
        try:
            os.kill(int(self._pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # gone already

    def close(self) -> None:
        try:
            self.browser.close()
        except PlaywrightError:
            pass  # already gone (crashed, or the driver stopped first)


class Browsers:
    """The browsers one test launched, all closed (and their logs printed) at its end."""

    def __init__(self, stack: ExitStack, workdir: Path) -> None:
        self._stack = stack
        self._workdir = workdir
        self._pw: Playwright | None = None
        self.all: list[Chromium] = []

    def launch(self, ns: str) -> Chromium:
        if self._pw is None:
            self._pw = self._stack.enter_context(sync_playwright())
        browser = Chromium(self._pw, ns, self._workdir / f"chromium-{len(self.all)}")
        self._stack.callback(browser.close)
        self.all.append(browser)
        return browser

    def logs(self) -> str:
        return "\n".join(b.logs() for b in self.all)

    def page_errors(self) -> list[str]:
        return [f"{t.name}: {e}" for b in self.all for t in b.tabs for e in t.errors]


@contextmanager
def browsers(workdir: Path) -> Iterator[Browsers]:
    """Launch Chromiums with `.launch(ns)`; all are closed, and what their pages said printed
    (pytest shows it for a failed test), however the block ends. A page that threw an uncaught
    exception fails the block: the page has a bug even if the test saw what it wanted."""
    with ExitStack() as stack:
        b = Browsers(stack, workdir)
        try:
            yield b
        finally:
            if b.all:
                print(b.logs())
        assert not b.page_errors(), "uncaught exceptions in the page:\n" + "\n".join(
            b.page_errors()
        )
