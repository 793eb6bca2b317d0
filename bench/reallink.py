"""Real links: beach against `ssh -tt`, `ssh -C` and mosh through shaped links (LAN,
broadband, mobile), side by side in one run. The link is two network namespaces joined through
a third that delays, rate-limits and drops their frames (bench/links/)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .context import Context
from .links import quality
from .links.legs import Cat, Failure, Legs, Session, attempt
from .links.net import TOOLS, shaped
from .links.profiles import BRIDGE_ALONE, MOBILE, PROFILES, Profile
from .links.remote import LinkSshd
from .results import Section, Spec, Target
from .stats import fmt, median, percentile
from .streams import synth_build_log

METHODS = ("beach", "ssh -tt", "ssh -C", "mosh")
JOINER_COUNTS = (0, 1, 3)
LS_MB = 17.6  # the coloured ls-like file at default sizes (scaled with --stream-mb)
JUDGED = ("broadband", "mobile")
ROWS = (
    ("echo50", "echo p50 (ms)"),
    ("echo99", "echo p99 (ms)"),
    ("ls", "cat ls --color to screen (s)"),
    ("ls_wire", "  ls: MB on the wire, down / up"),
    ("build", "cat build log to screen (s)"),
    ("build_wire", "  build log: MB on the wire, down / up"),
    ("host", "host's own cat, 0 / 1 / 3 joiners (s)"),
    ("host_x", "  host's cat, 3 joiners / none"),
    ("join", "join to the current screen (s)"),
    ("join_rt", "  join: round trips more than on LAN"),
    ("join_late", "  join after the cats, to the current screen (s)"),
)
SPEC = Spec(
    key="links",
    title="Real links: beach against ssh and mosh through shaped links",
    columns=(
        "profile: measurement",
        *METHODS,
        "ssh -tt / beach",
        "ssh -C / beach",
        "mosh / beach",
    ),
    labels=tuple(f"{p.name}: {label}" for p in PROFILES for _, label in ROWS),
    targets=(
        "broadband: cat ls to the joiner's screen >= 10x faster than ssh -tt, >= 3x than "
        "ssh -C, no slower than mosh",
        "mobile: cat ls to the joiner's screen >= 10x faster than ssh -tt, >= 3x than ssh -C, "
        "no slower than mosh",
        "broadband and mobile: keystroke echo p50 within 2 ms of ssh -tt's",
        "broadband and mobile: host's own cat with 3 joiners <= 1.1x with none",
        "mobile: join to the current screen < 1.5 s",
    ),
)
Result = list[float] | Cat | dict[int, list[float]] | Failure


def record_coloured_ls(path: Path, size: int) -> None:
    """`ls -lR --color=always /usr` as recorded once, cut (or repeated) to `size` bytes."""
    done = subprocess.run(
        ["ls", "-lR", "--color=always", "/usr"],
        capture_output=True,
        timeout=120,
        env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    data = done.stdout or b"(empty)\n"
    path.write_bytes((data * (size // len(data) + 1))[:size])
    whole_lines(path)


def whole_lines(path: Path) -> None:
    """Cut a stream after its last newline: a file cut inside an escape sequence would swallow
    the start of the end marker on a real screen (mosh's client draws the real screen)."""
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"\n") + 1])


def missing(ctx: Context) -> list[str]:
    """What this section needs and this machine lacks."""
    lacks = [tool for tool in (*TOOLS, "mosh") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        lacks.append("root (network namespaces)")
    if ctx.ssh is None:
        lacks.append("sshd")
    return lacks


def unavailable(why: str) -> Section:
    cell = f"links: not available ({why})"
    rows = [[label] + [cell] * (len(SPEC.columns) - 1) for label in SPEC.labels]
    targets = [Target(t, cell, None) for t in SPEC.targets]
    return Section(SPEC, rows, notes=[cell], targets=targets)


class Figures:
    """Every leg's result, by profile name and row key (and method)."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, dict[str, Result]]] = {}
        self.quality: dict[str, quality.Quality] = {}
        self.failures: list[str] = []

    def put(self, profile: str, key: str, method: str, value: Result) -> None:
        self.results.setdefault(profile, {}).setdefault(key, {})[method] = value

    def get(self, profile: str, key: str, method: str) -> Result | None:
        return self.results.get(profile, {}).get(key, {}).get(method)


def program_legs(
    legs: Legs, method: str, profile: str, ctx: Context, paths: dict[str, Path], figs: Figures
) -> None:
    """Every leg of one program in one session, reopened only after a leg that failed."""
    opts = ctx.options
    keys, warmup = max(opts.keystrokes // 10, 6), max(opts.warmup // 4, 1)
    session: Session | None = None

    def leg(key: str, what: str, measure: Callable[[Session], Result]) -> None:
        nonlocal session

        def opened() -> Result:
            nonlocal session
            if session is None:
                session = Session(legs, method)
            return measure(session)

        result = attempt(f"{profile} {method} {what}", opened, figs.failures)
        if isinstance(result, Failure) and session is not None:
            session.close()  # a session a leg gave up on is not reused
            session = None
        figs.put(profile, key, method, result)

    try:
        if method == "beach":  # (d), into the fresh shell, then once more after the cats
            leg("join", "joins", lambda s: legs.joins(s, max(opts.joins // 2, 1)))
        leg("echo", "echo", lambda s: s.echo(keys, warmup, opts.timeout))  # (a)
        for stream in ("ls", "build"):  # (b)
            leg(stream, f"cat {stream}", lambda s, st=stream: legs.cat(s, paths[st]))  # type: ignore[misc]
        if method == "beach":
            if opts.joins > 2:  # not in --quick
                leg("join_late", "join after the cats", lambda s: legs.joins(s, 1))
            leg(
                "host",
                "host cost",
                lambda s: legs.host_cost(
                    s.leave(),
                    JOINER_COUNTS,  # (c)
                    paths["ls"],
                    opts.reps,
                ),
            )
    finally:
        if session is not None:
            session.close()


def measure_profile(ctx: Context, profile: Profile, paths: dict[str, Path], figs: Figures) -> None:
    opts = ctx.options
    assert ctx.ssh is not None
    with shaped(profile) as link:
        figs.quality[profile.name] = quality.measure(
            link, 20 if opts.reps > 1 else 5, 3.0 if opts.reps > 1 else 1.0
        )
        sshd = LinkSshd(ctx.ssh, link)
        try:
            legs = Legs(link, sshd, ctx.workdir, opts.timeout)
            for method in METHODS:
                program_legs(legs, method, profile.name, ctx, paths, figs)
        finally:
            sshd.close()


# -- the table --------------------------------------------------------------------------------


def seconds(value: Result | None) -> float | None:
    return value.seconds if isinstance(value, Cat) else None


def cell(value: Result | None, key: str) -> str:
    if isinstance(value, Failure):
        return value.cell
    if value is None:
        return "-"
    if isinstance(value, Cat):
        if key.endswith("_wire"):
            return f"{value.down / 1e6:.2f} / {value.up / 1e6:.2f}"
        return fmt(value.seconds, 2)
    if isinstance(value, list):  # echo samples (s) or join times (s)
        if key == "echo50":
            return fmt(percentile(value, 50) * 1e3, 2)
        if key == "echo99":
            return fmt(percentile(value, 99) * 1e3, 2)
        return fmt(median(value), 2)
    if key == "host":
        return " / ".join(fmt(median(value[c]), 2) for c in JOINER_COUNTS)
    return "-"


def speedup(other: Result | None, beach: Result | None, timeout: float) -> tuple[str, float]:
    """How many times longer `other` took than beach: ("12.3x", 12.3); a lower bound ("> ")
    when `other` timed out; ("-", nan) when either is missing."""
    b = seconds(beach)
    if b is None or b <= 0:
        return "-", float("nan")
    if isinstance(other, Failure) and other.cell == "timeout":
        return f"> {timeout / b:.1f}x", timeout / b
    o = seconds(other)
    return ("-", float("nan")) if o is None else (f"{o / b:.1f}x", o / b)


def echo_p50(value: Result | None) -> float | None:
    return percentile(value, 50) * 1e3 if isinstance(value, list) and value else None


def row(figs: Figures, profile: str, key: str, label: str, timeout: float) -> list[str]:
    base = {"echo50": "echo", "echo99": "echo", "ls_wire": "ls", "build_wire": "build"}
    source = base.get(key, key)
    cells = [f"{profile}: {label}"]
    if key in ("host", "host_x", "join", "join_rt", "join_late"):
        cells += [beach_only(figs, profile, key), *(["-"] * 6)]
        return cells
    values = {m: figs.get(profile, source, m) for m in METHODS}
    cells += [cell(values[m], key) for m in METHODS]
    for m in METHODS[1:]:
        if key in ("ls", "build"):
            cells.append(speedup(values[m], values["beach"], timeout)[0])
        elif key == "echo50":
            b, o = echo_p50(values["beach"]), echo_p50(values[m])
            cells.append("-" if b is None or o is None else f"{o - b:+.2f} ms")
        else:
            cells.append("-")
    return cells


def join_median(figs: Figures, profile: str) -> float | None:
    value = figs.get(profile, "join", "beach")
    return median(value) if isinstance(value, list) and value else None


def beach_only(figs: Figures, profile: str, key: str) -> str:
    if key == "host_x":
        value = figs.get(profile, "host", "beach")
        if not isinstance(value, dict):
            return cell(value, key)
        return f"{median(value[3]) / median(value[0]):.2f}x"
    if key == "join_rt":
        here, lan = join_median(figs, profile), join_median(figs, PROFILES[0].name)
        q, q_lan = figs.quality.get(profile), figs.quality.get(PROFILES[0].name)
        if profile == PROFILES[0].name or None in (here, lan, q, q_lan):
            return "-"
        assert here is not None and lan is not None and q is not None and q_lan is not None
        return f"{(here - lan) / ((q.rtt_p50_ms - q_lan.rtt_p50_ms) / 1e3):.1f}"
    return cell(figs.get(profile, key, "beach"), key)


# -- the targets ------------------------------------------------------------------------------


NOT_MEASURED = "not measured in this run (--quick measures broadband only)"


def cat_target(figs: Figures, profile: str, name: str, timeout: float) -> Target:
    if profile not in figs.results:
        return Target(name, NOT_MEASURED, None)
    values = {m: figs.get(profile, "ls", m) for m in METHODS}
    ssh = speedup(values["ssh -tt"], values["beach"], timeout)
    ssh_c = speedup(values["ssh -C"], values["beach"], timeout)
    mosh = speedup(values["mosh"], values["beach"], timeout)
    measured = f"{ssh[0]} ssh -tt, {ssh_c[0]} ssh -C, {mosh[0]} mosh"
    if seconds(values["beach"]) is None:
        return Target(name, f"beach: {cell(values['beach'], 'ls')}", False)
    return Target(name, measured, ssh[1] >= 10 and ssh_c[1] >= 3 and mosh[1] >= 1.0)


def echo_target(figs: Figures, name: str) -> Target:
    parts: list[str] = []
    met: bool | None = True
    for profile in (p for p in JUDGED if p in figs.results):
        b = echo_p50(figs.get(profile, "echo", "beach"))
        s = echo_p50(figs.get(profile, "echo", "ssh -tt"))
        if b is None or s is None:
            parts.append(f"{profile}: not measured")
            met = False
            continue
        parts.append(f"{profile}: {b:.1f} vs {s:.1f} ms ({b - s:+.2f})")
        met = met and b - s <= 2.0
    return Target(name, "; ".join(parts) or NOT_MEASURED, met if parts else None)


def host_target(figs: Figures, name: str) -> Target:
    parts: list[str] = []
    met: bool | None = True
    for profile in (p for p in JUDGED if p in figs.results):
        value = figs.get(profile, "host", "beach")
        if not isinstance(value, dict):
            parts.append(f"{profile}: {cell(value, 'host')}")
            met = False
            continue
        x = median(value[3]) / median(value[0])
        parts.append(f"{profile}: {x:.2f}x")
        met = met and x <= 1.1
    return Target(name, "; ".join(parts) or NOT_MEASURED, met if parts else None)


def join_target(figs: Figures, name: str) -> Target:
    if MOBILE.name not in figs.results:
        return Target(name, NOT_MEASURED, None)
    value = join_median(figs, MOBILE.name)
    if value is None:
        return Target(name, cell(figs.get(MOBILE.name, "join", "beach"), "join"), False)
    return Target(name, f"median {value:.2f} s", value < 1.5)


# -- the section ------------------------------------------------------------------------------


def notes(ctx: Context, figs: Figures, alone: quality.Quality | None, paths: dict[str, Path]):
    opts = ctx.options
    size = paths["ls"].stat().st_size / 1e6
    lines = [
        "How the link is made (bench/links/): three network namespaces. The host's side and the "
        "joiner's side sit on one Ethernet segment that runs through a middle namespace, where "
        "a small delay bridge (bench/links/bridge_program.py, a process of its own) reads every "
        "frame from one side with an AF_PACKET socket, holds it half the profile's round trip, "
        "drops the profile's share at random, and sends it out the other side, where a tbf "
        "qdisc limits the rate (buffer: one bandwidth-delay product, at least 64 KiB). The "
        "kernel has no netem. The endpoint interfaces run with checksum and segmentation "
        "offload off (ethtool -K), so the bridged frames are complete. Everything is removed "
        "afterwards, also on an error or Ctrl-C.",
    ]
    for p in PROFILES:
        q = figs.quality.get(p.name)
        if q is not None:
            lines.append(f"{p.name} ({p.describe()}), measured: {q.describe()}.")
    if alone is not None:
        top = min(alone.down_mbit, alone.up_mbit)
        lan = figs.quality.get(PROFILES[0].name)
        bottleneck = (
            "on LAN the bridge is the bottleneck (the link carries less than 90% of 1 Gbit/s)"
            if lan is not None and min(lan.down_mbit, lan.up_mbit) < 0.9 * PROFILES[0].mbit
            else "on LAN the rate limit, not the bridge, sets the rate"
        )
        lines.append(
            f"The bridge alone (no delay, no rate limit) carries {alone.down_mbit:.0f} Mbit/s "
            f"down and {alone.up_mbit:.0f} up, {top / 20:.0f}x broadband's 20 Mbit/s: it is not "
            f"the bottleneck on broadband or mobile; {bottleneck}."
        )
    lines += [
        "Compared: `beach host` on the host's side with its embedded server (so signaling "
        "crosses the link too) and `beach join` on the joiner's side; `ssh -tt`, `ssh -C` and "
        "mosh (`--predict=never`, so its figure is the real echo, not a local guess) from the "
        "joiner's side to the benchmark's private sshd run again in the host's namespace "
        "(mosh starts mosh-server through it). Each leg starts its own processes.",
        f"Echo: {max(opts.keystrokes // 10, 6)} keystrokes per program and profile, typed one "
        "at a time at the far end (the joiner's terminal, the ssh or mosh client's), each after "
        "the previous echo came back there (bench/latency.py). Ratio columns: ms more than beach.",
        f"cat: `cat FILE` and an end marker typed at the far end, seconds until the marker is on "
        f"the far end's screen (for mosh: mosh-client's screen, which shows the current screen "
        f"rather than every byte); ls = `ls -lR --color=always /usr` recorded, {size:.1f} MB; "
        "the build log is bench/streams.py's coloured build log, the same size. Ratio columns: "
        "how many times longer the other program took than beach (a '>' figure: it timed out, "
        f"after {opts.timeout:.0f} s). MB on the wire: Ethernet bytes that arrived at the "
        "joiner's (down) and the host's (up) interface during the leg, all traffic included.",
        f"Host's own cat: the ls file typed at the host's keyboard, timed to the end marker on "
        f"the host's own screen, with 0, 1 and 3 beach joiners on the link (each drained by a "
        f"process of its own), {opts.reps} run(s) each, median.",
        f"Join: {max(opts.joins // 2, 1)} joins one after another into the fresh shared shell "
        "(the far-end joiner attached, idle), from starting `beach join` to the current screen "
        "on its terminal: a marker printed just before each join, since a late joiner is sent "
        "the screen's history first and an old prompt in it would count too early. Median. "
        "Round trips more than on LAN: (join time - LAN's) / (round trip - LAN's), with the "
        "measured round trips: how many times the join waits for the link (the rate adds a "
        "little: a screen's snapshot is a few KB). 'Join after the cats': one more join once the "
        "two cats went by, measured the same way; the history it is sent first shows there.",
        "A leg that gives no figure says 'timeout' (a wait ran out) or 'failed' in its cell; "
        "the reason is listed below.",
    ]
    skipped = [p.name for p in PROFILES if p.name not in opts.links_profiles]
    if skipped:
        lines.append(
            f"Not measured in this run: {', '.join(skipped)} (--quick measures "
            "broadband only); their rows say '-'."
        )
    lines += [f"not measured: {f}" for f in figs.failures]
    return lines


def run(ctx: Context) -> Section:
    lacks = missing(ctx)
    if lacks:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"the links section needs {', '.join(lacks)} (CI=true)")
        return unavailable(", ".join(lacks))
    # SIGTERM too removes the namespaces and stops what runs in them (via the finally blocks).
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return measure(ctx)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def measure(ctx: Context) -> Section:
    opts = ctx.options
    size = int(LS_MB * 1e6 * opts.stream_bytes / 20e6)
    paths = {"ls": ctx.workdir / "links-ls.txt", "build": ctx.workdir / "links-build.txt"}
    record_coloured_ls(paths["ls"], size)
    synth_build_log(paths["build"], size)
    whole_lines(paths["build"])
    figs = Figures()
    with shaped(BRIDGE_ALONE) as link:
        alone = quality.measure(link, 5, 2.0 if opts.reps > 1 else 1.0)
    for profile in PROFILES:
        if profile.name in opts.links_profiles:
            measure_profile(ctx, profile, paths, figs)
    rows = [row(figs, p.name, key, label, opts.timeout) for p in PROFILES for key, label in ROWS]
    targets = [
        cat_target(figs, JUDGED[0], SPEC.targets[0], opts.timeout),
        cat_target(figs, JUDGED[1], SPEC.targets[1], opts.timeout),
        echo_target(figs, SPEC.targets[2]),
        host_target(figs, SPEC.targets[3]),
        join_target(figs, SPEC.targets[4]),
    ]
    data = {
        "quality": {name: asdict(q) for name, q in figs.quality.items()},
        "bridge_alone": asdict(alone),
        "results": {
            p: {
                k: {m: v if isinstance(v, list | dict) else asdict(v) for m, v in per.items()}
                for k, per in keys.items()
            }
            for p, keys in figs.results.items()
        },
    }
    return Section(SPEC, rows, notes=notes(ctx, figs, alone, paths), targets=targets, data=data)
