"""Browser join time against `beach join`, side by side into the same host in one run: from
opening the join link in Chromium to the shared screen's first paint (the prompt in the
page's xterm.js buffer), and from starting `beach join` to the prompt on its terminal.

Each browser join is a fresh browser context (no cache, no storage) in one running Chromium,
the page served by `beach serve` as a person's browser would load it; the two kinds of join
alternate so that both see the same machine. Debian's chromium, driven by playwright; never a
downloaded browser.
"""

from __future__ import annotations

import shutil
import time

from .beach import BeachHost, BeachServer
from .context import Context
from .env import PROMPT, SHELL
from .errors import BenchError
from .results import Section, Spec, Target
from .stats import fmt, median

SPEC = Spec(
    key="browser",
    title="Browser join (seconds)",
    columns=("join", "median", "min", "max", "runs"),
    labels=(
        "browser: open the link to first screen",
        "  of which: page loaded (HTML, script, stylesheet)",
        "beach join: start to first screen",
        "ratio browser / beach join (medians)",
    ),
    targets=("browser join no slower than beach join",),
)
TIMEOUT = 30.0
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The prompt somewhere in the page's terminal buffer.
_PAINTED = (
    "p => { const t = window.beach && window.beach.terminal; if (!t) return false;"
    " const b = t.buffer.active; for (let y = 0; y < b.length; y++) {"
    " const l = b.getLine(y); if (l && l.translateToString(true).includes(p)) return true; }"
    " return false; }"
)


def _browser_join(browser, link: str) -> tuple[float, float]:
    context = browser.new_context(viewport={"width": 1000, "height": 600})
    try:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(link, wait_until="load", timeout=TIMEOUT * 1000)
        loaded = time.perf_counter()
        page.wait_for_function(_PAINTED, arg=PROMPT.strip(), timeout=TIMEOUT * 1000, polling=5)
        painted = time.perf_counter()
        return painted - start, loaded - start
    finally:
        context.close()


def run(ctx: Context) -> Section:
    if shutil.which(CHROMIUM) is None:
        raise BenchError(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    browser_total: list[float] = []
    loads: list[float] = []
    cli_total: list[float] = []
    server = BeachServer(ctx.workdir)
    host: BeachHost | None = None
    try:
        host = BeachHost(server, ctx.workdir, SHELL)
        host.wait_prompt()
        link = host.info["join_link"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                _browser_join(browser, link)  # warm-up: Chromium's own first-page costs
                for _ in range(ctx.options.joins):
                    total, loaded = _browser_join(browser, link)
                    browser_total.append(total)
                    loads.append(loaded)
                    joiner = host.join()
                    try:
                        joiner.pty.read_until(PROMPT.encode(), TIMEOUT)
                        cli_total.append(time.perf_counter() - joiner.started)
                    finally:
                        joiner.detach(timeout=5.0)
                    time.sleep(0.2)
            finally:
                browser.close()
    finally:
        if host is not None:
            host.close()
        server.close()

    ratio = median(browser_total) / median(cli_total)
    rows = []
    for label, values in zip(SPEC.labels[:3], (browser_total, loads, cli_total), strict=True):
        spread = [fmt(median(values), 3), fmt(min(values), 3), fmt(max(values), 3)]
        rows.append([label, *spread, str(len(values))])
    rows.append([SPEC.labels[3], f"{ratio:.2f}", "-", "-", str(len(browser_total))])
    target = Target(
        SPEC.targets[0],
        f"browser {median(browser_total):.3f} s, beach join {median(cli_total):.3f} s "
        f"(ratio {ratio:.2f})",
        ratio <= 1.0,
    )
    notes = [
        "Chromium and the host on loopback; the page comes from `beach serve` (the same page "
        "the host's embedded server serves). The browser joins over its own WebRTC data "
        "channel, peer to peer, exactly like `beach join`.",
        "`beach join` pays for starting Python and importing beach and aiortc (see the join "
        "section); the browser pays for loading and parsing the page. Neither reuses anything "
        "from the join before: a fresh browser context, a fresh process.",
    ]
    data = {"browser": browser_total, "loaded": loads, "cli": cli_total, "ratio": [ratio]}
    return Section(SPEC, rows, notes=notes, targets=[target], data=data)
