"""Server capacity: N idle sessions held by one `beach serve` (its VmRSS before and after) and
the signaling relay's latency at a bounded message rate, idle and with the N sessions held;
then the N sessions end and N more come and go (is their memory given back?).

Two legs in one run, one fresh server each: Python's own collector (BEACH_SERVE_GC=default, the
"before") and beach serve's (its long-lived objects frozen, beach_cli/server/collector.py). The
load comes from bench/loadgen.py in a second process; the server's collections are timed inside
it and read from its /metrics."""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
from pathlib import Path
from typing import Any

from .beach import BeachServer
from .context import Context, Options
from .env import PYTHON, proc_env
from .errors import BenchError
from .results import Section, Spec, Target
from .stats import fmt

TARGET_SESSIONS = 10_000
RSS_LIMIT_BYTES = 1_000_000_000
LEGS = (("default", "Python's default GC"), ("freeze", "beach's GC (frozen)"))
SPEC = Spec(
    key="server",
    title="Server capacity (one beach serve process)",
    columns=("server", *(title for _, title in LEGS)),
    labels=(
        "idle sessions held",
        "registration rate, sessions/s",
        "server RSS before, MiB",
        "server RSS with the sessions, MiB",
        "RSS per session, KiB",
        "RSS at 10,000 sessions, MiB",
        "relay p50 / p99 / max, ms (idle server)",
        "relay p50 / p99 / max, ms (sessions held)",
        "relay messages sent / received (sessions held)",
        "longest GC pause in the server, ms (whole run)",
        "full collections / their ms (relay, sessions held)",
        "server RSS after the sessions ended, MiB",
        "server RSS after as many more came and went, MiB",
        "objects frozen (at most), sessions held",
        "allocated blocks, k: held / ended / more came and went",
    ),
    targets=(
        "10,000 idle sessions under 1 GB RSS",
        "relay p99 <= 5 ms at 1000 msg/s",
    ),
)


def _raise_fd_limit() -> None:
    """Children (the server) inherit it: 10,000 sessions need 10,000+ descriptors."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _relay_cell(r: dict) -> str:
    if "p50_ms" not in r:
        return "no messages arrived"
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['max_ms']:.2f}"


def _leg(opts: Options, workdir: Path, repo_root: Path, mode: str) -> dict[str, Any]:
    """One fresh `beach serve` with BEACH_SERVE_GC=`mode`, loaded by bench/loadgen.py."""
    budget = 60.0 + opts.sessions / 50  # registration time limit, generous
    timeout = 2 * budget + 12 * opts.relay_seconds + 180.0
    server = BeachServer(workdir, env={"BEACH_SERVE_GC": mode})
    try:
        argv = [PYTHON, "-m", "bench.loadgen", "--url", server.url, "--churn"]
        argv += ["--server-pid", str(server.pid), "--sessions", str(opts.sessions)]
        argv += ["--rate", str(opts.relay_rate), "--seconds", str(opts.relay_seconds)]
        argv += ["--budget", str(budget)]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=proc_env(),
                cwd=str(repo_root),
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"load generator still running after {timeout:.0f} s") from exc
        if done.returncode != 0:
            last = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise BenchError(f"load generator failed (exit {done.returncode}): {last}")
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        out["limits"] = server.limits
    finally:
        server.close()
    held = out["sessions"]
    per_session = (out["rss_after_kib"] - out["rss_before_kib"]) / held if held else None
    out["per_session_kib"] = per_session
    out["at_target_kib"] = (
        None if per_session is None else out["rss_before_kib"] + per_session * TARGET_SESSIONS
    )
    return out


def _cells(out: dict[str, Any], wanted: int) -> list[str]:
    """One leg's column, in SPEC.labels order."""
    held, churn = out["sessions"], out["churn"]
    idle, loaded = out["relay_idle"], out["relay_loaded"]
    gc_held, gc_loaded = out["gc_held"], out["gc_loaded"]
    full = gc_loaded["beach_gc_collections_total_gen2"] - gc_held["beach_gc_collections_total_gen2"]
    full_s = (
        gc_loaded["beach_gc_pause_seconds_total_gen2"]
        - gc_held["beach_gc_pause_seconds_total_gen2"]
    )
    longest = churn["gc_closed_again"]["beach_gc_pause_seconds_max"]
    blocks = (
        gc_loaded["beach_allocated_blocks"],
        churn["gc_closed"]["beach_allocated_blocks"],
        churn["gc_closed_again"]["beach_allocated_blocks"],
    )
    at_target = out["at_target_kib"]
    return [
        f"{held} of {wanted}",
        fmt(held / out["register_seconds"], 0),
        fmt(out["rss_before_kib"] / 1024, 1),
        fmt(out["rss_after_kib"] / 1024, 1),
        fmt(out["per_session_kib"], 1),
        fmt(None if at_target is None else at_target / 1024, 1)
        + ("" if held >= TARGET_SESSIONS else " (extrapolated)"),
        _relay_cell(idle),
        _relay_cell(loaded),
        f"{loaded['sent']} / {loaded['received']} at {loaded['rate']:.0f} msg/s",
        fmt(1e3 * longest, 1),
        f"{full:.0f} / {1e3 * full_s:.1f}",
        fmt(churn["rss_closed_kib"] / 1024, 1),
        fmt(churn["rss_closed_again_kib"] / 1024, 1),
        f"{gc_loaded['beach_gc_frozen_objects']:,.0f}",
        " / ".join(f"{n / 1000:,.0f}" for n in blocks),
    ]


def run(ctx: Context) -> Section:
    opts = ctx.options
    _raise_fd_limit()
    legs = {mode: _leg(opts, ctx.workdir, ctx.repo_root, mode) for mode, _ in LEGS}
    columns = [_cells(legs[mode], opts.sessions) for mode, _ in LEGS]
    rows = [[label, *(col[i] for col in columns)] for i, label in enumerate(SPEC.labels)]

    before, after = legs["default"], legs["freeze"]  # the targets judge what ships: "freeze"
    held, at_target = after["sessions"], after["at_target_kib"]
    rss_ok = at_target is not None and at_target * 1024 < RSS_LIMIT_BYTES
    measured_rss = "not measured" if at_target is None else f"{at_target * 1024 / 1e9:.2f} GB"
    if held < TARGET_SESSIONS and at_target is not None:
        measured_rss += f" (extrapolated from {held} sessions)"
    idle, loaded = after["relay_idle"], after["relay_loaded"]
    relay_p99 = max(idle.get("p99_ms", float("inf")), loaded.get("p99_ms", float("inf")))
    old = before["relay_loaded"].get("p99_ms", float("nan"))
    targets = [
        Target(SPEC.targets[0], measured_rss, rss_ok),
        Target(
            SPEC.targets[1],
            f"p99 {idle.get('p99_ms', float('nan')):.2f} ms idle, "
            f"{loaded.get('p99_ms', float('nan')):.2f} ms with {held} sessions held "
            f"({old:.2f} ms with Python's default GC)",
            relay_p99 <= 5.0 and loaded["received"] == loaded["sent"],
        ),
    ]
    notes = [
        f"Load generator: a second process (bench/loadgen.py, aiohttp), {opts.sessions} host "
        f"registrations with up to 200 in flight; relay: {opts.relay_rate} msg/s for "
        f"{opts.relay_seconds:g} s, 3 runs per phase (p50 and p99: medians over the runs; max: "
        "the worst of all), joiner -> server -> host, one-way time measured inside the load "
        "generator (one clock). It freezes its own objects once its sessions are open, so that "
        "its own collections do not show in the latencies.",
        "Two legs, one fresh server each, in this order: BEACH_SERVE_GC=default (Python's "
        "collector as it is), then beach serve's own (start-up objects frozen, then whatever "
        "survives a collection of the young generations; the frozen set audited if it "
        "outgrows the live sessions). GC pauses and frozen objects: the server's /metrics "
        "(beach_gc_*), timed with gc.callbacks inside it.",
        "Came and went: the held sessions end, as many new ones register and end; RSS and "
        "allocated blocks (sys.getallocatedblocks() in the server: what Python's allocator "
        "handed out and has not had back) read 2 s after each end; ended sessions stay for "
        "their host's 60 s grace, a few blocks each. RSS stays up either way: the allocator "
        "keeps its arenas for reuse.",
        "GB = 10^9 bytes; RSS from /proc/<pid>/status VmRSS of the beach serve process.",
    ]
    notes.append(
        "beach serve ran with "
        + " ".join(f"{flag} {value}" for flag, value in after["limits"].items())
        + " (its abuse limits would otherwise refuse this load from one address)."
    )
    for mode, title in LEGS:
        out = legs[mode]
        if out["errors"]:
            notes.append(f"{title}: registration errors (first few): {'; '.join(out['errors'])}")
        for name, relay in (("idle", out["relay_idle"]), ("sessions held", out["relay_loaded"])):
            if relay.get("error"):
                notes.append(f"{title}, relay ({name}): the server closed {relay['error']}")
    return Section(SPEC, rows, notes=notes, targets=targets, data=legs)
