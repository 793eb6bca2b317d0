"""Predictive echo (issue 16) on shaped links: keystroke to glyph on the joiner's screen for
beach with and without its guesses, `ssh -tt` and mosh (which guesses too), the joiner's own
count of what it showed and got wrong, its CPU during a big cat per --predict mode, and, on
LAN, that --predict auto changes not one byte of the joiner's output."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from .context import Context
from .links import quality
from .links.legs import Failure, attempt
from .links.net import shaped
from .links.profiles import BROADBAND, LAN, MOBILE, PROFILES, Profile
from .links.remote import LinkSshd
from .predict_legs import Cat, Far, Typing
from .predict_script import LINES, QUICK_LINES, keys_of
from .reallink import missing, record_coloured_ls
from .results import Section, Spec, Target
from .stats import fmt, median, percentile

RTT100 = Profile("100 ms", 100.0, 20.0)
RTT200 = Profile("200 ms", 200.0, 20.0)
TYPED_ON = (RTT100, RTT200, MOBILE)
JUDGED = (RTT100, RTT200)
METHODS = ("beach never", "beach auto", "ssh -tt", "mosh")
CAT_MODES = ("beach never", "beach auto", "beach always")
COLUMNS = ("beach never", "beach auto", "beach always", "ssh -tt", "mosh")
CPU_SLACK = 0.05  # s of CPU within which two cats cost the same (a few of /proc's ticks)
LINE_TIMEOUT = 30.0  # s: a typed line's every glyph, or a prompt
TYPING_ROWS = (
    ("p50", "keystroke to glyph p50 (ms)"),
    ("p99", "keystroke to glyph p99 (ms)"),
    ("first", "  first key of each line, p50 (ms)"),
    ("half", "  keys drawn within half a round trip (%)"),
    ("screen", "  screen updates: wrong / back to an older line, of all (bench's count)"),
    ("shown", "  shown before the host's echo (joiner's count, % of keys)"),
    ("wrong", "  shown wrong / shown (joiner's count)"),
)
CAT_ROWS = (
    ("cpu", "joiner's CPU during the ls cat (s, user + system)"),
    ("cat", "the ls cat to the joiner's final screen (s)"),
    ("drawn", "  the cat: MB written to the joiner's terminal"),
    ("pcpu", "joiner's CPU during ~45 KB/s of output for ~5.5 s (s, user + system)"),
    ("pdrawn", "  that output: MB written to the joiner's terminal"),
)
SAME = "LAN: joiner's output, auto = never, byte for byte"
SPEC = Spec(
    key="predict",
    title="Predictive echo: keystroke to glyph through shaped links",
    columns=("profile: measurement", *COLUMNS, "with / without prediction"),
    labels=(
        *(f"{p.name}: {label}" for p in TYPED_ON for _, label in TYPING_ROWS),
        *(f"{BROADBAND.name}: {label}" for _, label in CAT_ROWS),
        SAME,
    ),
    targets=(
        "100 ms and 200 ms: keystroke to glyph p50 with --predict auto < 10 ms",
        "100 ms and 200 ms: with --predict never, p50 within 25% of the measured round trip",
        "broadband: --predict always: the joiner's CPU during the ls cat <= 1.25x (or 0.05 s "
        "more) and its time to the final screen <= 1.1x --predict never's",
        "LAN: the joiner's output with --predict auto is byte for byte the one with never",
        "100 ms, 200 ms and mobile: with --predict auto no screen update while typing shows a "
        "wrong line or goes back to an older one (the bench's count)",
    ),
)
Result = Typing | list[Cat] | Failure
_serial = itertools.count(1)


class Figures:
    def __init__(self) -> None:
        self.results: dict[tuple[str, str], Result] = {}  # (profile, method)
        self.rtt: dict[str, float] = {}  # measured UDP round trip p50, ms
        self.quality: dict[str, quality.Quality] = {}
        self.failures: list[str] = []
        self.namespaces: list[str] = []  # of every link made (the smoke test sees them gone)

    def typing(self, profile: str, method: str) -> Typing | None:
        value = self.results.get((profile, method))
        return value if isinstance(value, Typing) else None

    def cats(self, method: str) -> list[Cat] | None:
        value = self.results.get((BROADBAND.name, method))
        return value if isinstance(value, list) else None


def quick_run(ctx: Context) -> bool:
    """--quick (which measures one real-link profile): one line, typed on the 100 ms link and
    LAN; the cat with never and always."""
    return len(ctx.options.links_profiles) < len(PROFILES)


def typed_on(ctx: Context) -> tuple[Profile, ...]:
    return (RTT100,) if quick_run(ctx) else TYPED_ON


def lines_of(ctx: Context) -> tuple[str, ...]:
    return QUICK_LINES if quick_run(ctx) else LINES


def cat_modes(ctx: Context) -> tuple[str, ...]:
    return ("beach never", "beach always") if quick_run(ctx) else CAT_MODES


def keys_typed(ctx: Context) -> int:
    """Keystrokes of the session, Enter included (Ctrl-L before it is not counted)."""
    return sum(len(keys_of(line)) for line in lines_of(ctx))


# -- measuring --------------------------------------------------------------------------------


def measure_link(
    ctx: Context, profile: Profile, methods: tuple[str, ...], figs: Figures, path: Path | None
) -> None:
    """On one shaped link: each method types the session, or (with `path`) cats it."""
    opts = ctx.options
    assert ctx.ssh is not None
    with shaped(profile) as link:
        figs.namespaces += [link.host, link.middle, link.joiner]
        q = quality.measure(link, 10, 0.5)
        figs.quality[profile.name] = q
        figs.rtt[profile.name] = q.rtt_p50_ms
        sshd = LinkSshd(ctx.ssh, link)
        try:
            for method in methods:

                def leg(method: str = method) -> Result:
                    far = Far(link, sshd, ctx.workdir, method, next(_serial), path is None)
                    try:
                        if path is None:
                            return far.typing(lines_of(ctx), LINE_TIMEOUT)
                        cats = far.cats(path, opts.reps, opts.timeout)
                        return cats + far.paced(path, opts.reps, opts.timeout)
                    finally:
                        far.close()

                what = f"predict: {profile.name} {method} {'typing' if path is None else 'cat'}"
                figs.results[profile.name, method] = attempt(what, leg, figs.failures)
        finally:
            sshd.close()


def measure(ctx: Context) -> Section:
    opts = ctx.options
    ls = ctx.workdir / "predict-ls.txt"
    record_coloured_ls(ls, opts.stream_bytes)
    figs = Figures()
    measure_link(ctx, LAN, ("beach never", "beach auto"), figs, None)
    for profile in typed_on(ctx):
        measure_link(ctx, profile, METHODS, figs, None)
    measure_link(ctx, BROADBAND, cat_modes(ctx), figs, ls)
    rows = [typing_row(ctx, figs, p, key, label) for p in TYPED_ON for key, label in TYPING_ROWS]
    rows += [cat_row(figs, key, label) for key, label in CAT_ROWS]
    rows.append(same_row(figs))
    targets = [
        auto_target(figs, SPEC.targets[0]),
        never_target(figs, SPEC.targets[1]),
        cat_target(figs, SPEC.targets[2]),
        same_target(figs, SPEC.targets[3]),
        screen_target(figs, SPEC.targets[4]),
    ]
    data = {
        "quality": {name: asdict(q) for name, q in figs.quality.items()},
        "namespaces": figs.namespaces,
        "results": {f"{p} / {m}": _plain(v) for (p, m), v in figs.results.items()},
    }
    return Section(SPEC, rows, notes=notes(ctx, figs, ls), targets=targets, data=data)


def _plain(value: Result) -> object:
    if isinstance(value, Typing):
        return {
            "samples_ms": [round(s.seconds * 1e3, 3) for s in value.samples],
            "looks": asdict(value.looks),
            "first": [s.first for s in value.samples],
            "summary": asdict(value.summary) if value.summary else None,
            "output_bytes": len(value.output),
        }
    if isinstance(value, list):
        return [asdict(c) for c in value]
    return asdict(value)


# -- the table --------------------------------------------------------------------------------


def ms(values: list[float], p: float) -> float | None:
    return percentile(values, p) * 1e3 if values else None


def typing_cell(ctx: Context, figs: Figures, profile: Profile, key: str, method: str) -> str:
    value = figs.results.get((profile.name, method))
    if isinstance(value, Failure):
        return value.cell
    if value is None or not isinstance(value, Typing):
        return "-"
    seconds = [s.seconds for s in value.samples]
    if key in ("p50", "p99"):
        return fmt(ms(seconds, 50 if key == "p50" else 99), 1)
    if key == "first":
        return fmt(ms([s.seconds for s in value.samples if s.first], 50), 1)
    if key == "screen":
        looks = value.looks
        return f"{looks.wrong} / {looks.back} of {looks.updates}"
    if key == "half":
        half = profile.rtt_ms / 2e3
        return f"{100 * sum(s < half for s in seconds) / max(len(seconds), 1):.0f}%"
    if not method.startswith("beach"):
        return "-"
    s = value.summary
    if s is None:
        return "none guessed" if method == "beach auto" else "-"
    if key == "shown":
        typed = keys_typed(ctx)
        return f"{100 * s.shown / typed:.0f}% ({s.shown}/{typed})"
    rate = f"{100 * s.wrong / s.shown:.1f}%" if s.shown else "-"
    return f"{rate} ({s.wrong}/{s.shown}, {s.resets} resets)"


def typing_row(ctx: Context, figs: Figures, profile: Profile, key: str, label: str) -> list[str]:
    cells = [f"{profile.name}: {label}"]
    cells += [typing_cell(ctx, figs, profile, key, m) if m in METHODS else "-" for m in COLUMNS]
    ratio = "-"
    if key in ("p50", "p99"):
        auto, never = (figs.typing(profile.name, m) for m in ("beach auto", "beach never"))
        p = 50 if key == "p50" else 99
        if auto and never and auto.samples and never.samples:
            a = ms([s.seconds for s in auto.samples], p)
            n = ms([s.seconds for s in never.samples], p)
            assert a is not None and n is not None
            ratio = f"{a / n:.2f}x" if n > 0 else "-"
    return [*cells, ratio]


def cat_value(cats: list[Cat], key: str) -> float:
    kind = "paced" if key.startswith("p") else "cat"
    runs = [c for c in cats if c.kind == kind]
    if key.endswith("drawn"):
        return median([c.drawn / 1e6 for c in runs])
    return median([c.cpu if key.endswith("cpu") else c.seconds for c in runs])


def cat_row(figs: Figures, key: str, label: str) -> list[str]:
    cells = [f"{BROADBAND.name}: {label}"]
    for m in COLUMNS:
        value = figs.results.get((BROADBAND.name, m))
        if isinstance(value, Failure):
            cells.append(value.cell)
        elif isinstance(value, list) and value:
            cells.append(fmt(cat_value(value, key), 2))
        else:
            cells.append("-")
    always, never = figs.cats("beach always"), figs.cats("beach never")
    ratio = "-"
    if always and never and cat_value(never, key) > 0:
        ratio = f"{cat_value(always, key) / cat_value(never, key):.2f}x (always)"
    return [*cells, ratio]


def same_output(figs: Figures) -> tuple[bool, str] | None:
    auto, never = figs.typing(LAN.name, "beach auto"), figs.typing(LAN.name, "beach never")
    if auto is None or never is None:
        return None
    if auto.output == never.output:
        return True, f"yes ({len(auto.output)} bytes)"
    first = next(
        (i for i, (a, b) in enumerate(zip(auto.output, never.output, strict=False)) if a != b),
        min(len(auto.output), len(never.output)),
    )
    return False, f"no ({len(auto.output)} vs {len(never.output)} bytes, differ at {first})"


def same_row(figs: Figures) -> list[str]:
    cells = [SAME] + ["-"] * (len(SPEC.columns) - 1)
    seen = same_output(figs)
    if seen is not None:
        cells[COLUMNS.index("beach auto") + 1] = seen[1]
    else:
        failed = [
            v
            for m in ("beach auto", "beach never")
            if isinstance(v := figs.results.get((LAN.name, m)), Failure)
        ]
        if failed:
            cells[COLUMNS.index("beach auto") + 1] = failed[0].cell
    return cells


# -- the targets ------------------------------------------------------------------------------


NOT_MEASURED = "not measured in this run (--quick types on the 100 ms link only)"


def p50_of(figs: Figures, profile: Profile, method: str) -> float | None:
    value = figs.typing(profile.name, method)
    return ms([s.seconds for s in value.samples], 50) if value else None


def auto_target(figs: Figures, name: str) -> Target:
    parts, met = [], True
    for p in (p for p in JUDGED if (p.name, "beach auto") in figs.results):
        v = p50_of(figs, p, "beach auto")
        parts.append(f"{p.name}: {fmt(v, 1)} ms")
        met = met and v is not None and v < 10
    return Target(name, "; ".join(parts) or NOT_MEASURED, met if parts else None)


def never_target(figs: Figures, name: str) -> Target:
    parts, met = [], True
    for p in (p for p in JUDGED if (p.name, "beach never") in figs.results):
        v, rtt = p50_of(figs, p, "beach never"), figs.rtt.get(p.name)
        if v is None or rtt is None:
            parts.append(f"{p.name}: not measured")
            met = False
            continue
        parts.append(f"{p.name}: {v:.1f} ms, round trip {rtt:.1f} ms ({v / rtt:.2f}x)")
        met = met and abs(v - rtt) <= 0.25 * rtt
    return Target(name, "; ".join(parts) or NOT_MEASURED, met if parts else None)


def cat_target(figs: Figures, name: str) -> Target:
    always, never = figs.cats("beach always"), figs.cats("beach never")
    if not always or not never:
        return Target(name, "not measured (a cat failed)", False)
    cpu_a, cpu_n = cat_value(always, "cpu"), cat_value(never, "cpu")
    time = cat_value(always, "cat") / cat_value(never, "cat")
    # /proc counts CPU in ticks (10 ms): a tick or two more is no measurable cost.
    cpu_ok = cpu_a <= 1.25 * cpu_n or cpu_a - cpu_n <= CPU_SLACK
    measured = f"CPU {cpu_a:.2f} vs {cpu_n:.2f} s, time {time:.2f}x"
    return Target(name, measured, cpu_ok and time <= 1.1)


def same_target(figs: Figures, name: str) -> Target:
    seen = same_output(figs)
    if seen is None:
        return Target(name, "not measured (a LAN session failed)", False)
    return Target(name, seen[1], seen[0])


def screen_target(figs: Figures, name: str) -> Target:
    parts, met = [], True
    for p in (p for p in TYPED_ON if (p.name, "beach auto") in figs.results):
        value = figs.typing(p.name, "beach auto")
        if value is None:
            parts.append(f"{p.name}: not measured")
            met = False
            continue
        looks = value.looks
        parts.append(f"{p.name}: {looks.wrong} wrong, {looks.back} back of {looks.updates}")
        met = met and looks.wrong == 0 and looks.back == 0
    return Target(name, "; ".join(parts) or NOT_MEASURED, met if parts else None)


# -- the section ------------------------------------------------------------------------------


def notes(ctx: Context, figs: Figures, ls: Path) -> list[str]:
    opts = ctx.options
    lines = [
        "Which row measures what: these rows time what a person sees, guesses included; the "
        "real-link section's echo rows run `beach join --predict never` (bench/links/legs.py) "
        "and so time the transport alone, as before prediction.",
        f"Links as in the real-link section (bench/links/): {RTT100.name} and {RTT200.name} "
        f"({RTT100.describe()}, {RTT200.describe()}), {MOBILE.name} ({MOBILE.describe()}), "
        f"{BROADBAND.name} ({BROADBAND.describe()}) for the cat and {LAN.name} "
        f"({LAN.describe()}) for the byte comparison.",
    ]
    for name, q in figs.quality.items():
        lines.append(f"{name}, measured: {q.describe()}.")
    lines += [
        "Typing: `bash --norc -i` with the plain prompt of bench/env.py on the host's side; "
        f"after Ctrl-L, "
        f"{len(lines_of(ctx))} command lines ({keys_typed(ctx)} keys: "
        f"{'; '.join(repr(keys_of(x)[-1].text) for x in lines_of(ctx))}), typed into the far "
        "end's terminal (the beach joiner's, the ssh or mosh client's) 90-130 ms apart (the "
        "same seeded pauses for every program), with a typo fixed by backspace, an edit made "
        "with left and right arrows; Enter once the whole line shows, 0.25 s later, and the "
        "next line 0.4 s after the next prompt (bench/predict_script.py).",
        "Keystroke to glyph: from writing the key to the first screen update (pyte on everything "
        "the far end's terminal shows) at which the prompt's row and the cursor are what the "
        "line editor shows after that key; a later key's state that repeats an earlier one "
        "does not count early; two keys answered in one update both count at it. Enter is not "
        "timed. First key of each line: after a fresh prompt beach shows no guess until one "
        "is confirmed (a tentative epoch), so it takes a round trip by design. Ratio column: "
        "auto / never.",
        "Screen updates (the bench's own count, for every program): each change of the "
        "prompt's row or the cursor while a line is typed; wrong: a line no key written so far "
        "leads to (a guess drawn wrong, or drawn over a cell the host has changed since); back: "
        "an older line than one already drawn (a guess taken back before the host caught up: "
        "a flicker). A program that draws each echo whole has neither.",
        "mosh in its default adaptive mode (`--predict=adaptive`: it guesses when the link is "
        "slow); `ssh -tt` never guesses. The joiner's count is the line `beach join` logs at "
        "INFO when it leaves ('predictive echo: N keystrokes guessed at, S shown before the "
        "host's echo, C cells confirmed, W shown wrong, R resets'); % of keys: S over every key "
        "typed, Enter included.",
        f"Cat: `cat FILE` typed at the joiner of a fresh session per --predict mode, "
        f"{opts.reps} run(s) each, median; FILE is `ls -lR --color=always /usr` recorded, "
        f"{ls.stat().st_size / 1e6:.1f} MB; seconds to the end marker on the joiner's screen, "
        "and the `beach join` process's user + system CPU (/proc/PID/stat) over the cat and "
        "the 0.3 s after it; MB written to the joiner's terminal: what it drew meanwhile (the "
        "host sends output faster than anyone reads as the current screen, ten times a second, "
        "so this is far less than the file). Paced output: `head -c 4800 FILE` 50 times, "
        "0.1 s apart, then the end marker (in the same session, after the cats): slow enough "
        "that a joiner modelling the screen keeps feeding its model (join/echo.py's budget is "
        "64 KiB a second), so this is what the model costs. Ratio column: always / never.",
        "LAN: the full typing session with --predict never and with auto, each on a fresh host; "
        "everything the joiner's terminal showed from Ctrl-L to the last prompt, concatenated, "
        "compared byte for byte (on a 1 ms link auto must not even model the screen).",
        "A leg that gives no figure says 'timeout' or 'failed' in its cells; the reason is "
        "listed below.",
    ]
    skipped = [p.name for p in TYPED_ON if p not in typed_on(ctx)]
    if skipped:
        lines.append(f"Not typed on in this run: {', '.join(skipped)} (--quick); rows say '-'.")
    lines += [f"not measured: {f}" for f in figs.failures]
    return lines


def unavailable(why: str) -> Section:
    cell = f"predict: not available ({why})"
    rows = [[label] + [cell] * (len(SPEC.columns) - 1) for label in SPEC.labels]
    return Section(SPEC, rows, notes=[cell], targets=[Target(t, cell, None) for t in SPEC.targets])


def run(ctx: Context) -> Section:
    lacks = missing(ctx)  # the real-link section's needs: the same links, sshd and mosh
    if not lacks:
        with sigterm_unwinds():
            return measure(ctx)
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"the predict section needs {', '.join(lacks)} (CI=true)")
    return unavailable(", ".join(lacks))


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit meanwhile, so the finally blocks remove the namespaces and
    stop what runs in them."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
