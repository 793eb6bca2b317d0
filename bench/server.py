"""Server capacity: N idle sessions held by one `beach serve` (its VmRSS before and after) and
the signaling relay's latency at a bounded message rate, idle and with the N sessions held.
The load comes from bench/loadgen.py in a second process."""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess

from .beach import BeachServer
from .context import Context
from .env import PYTHON, proc_env
from .errors import BenchError
from .results import Section, Spec, Target
from .stats import fmt

TARGET_SESSIONS = 10_000
RSS_LIMIT_BYTES = 1_000_000_000
SPEC = Spec(
    key="server",
    title="Server capacity (one beach serve process)",
    columns=("server", "value"),
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


def run(ctx: Context) -> Section:
    opts = ctx.options
    _raise_fd_limit()
    budget = 60.0 + opts.sessions / 50  # registration time limit, generous
    timeout = budget + 12 * opts.relay_seconds + 120.0
    server = BeachServer(ctx.workdir)
    try:
        argv = [PYTHON, "-m", "bench.loadgen", "--url", server.url]
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
                cwd=str(ctx.repo_root),
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"load generator still running after {timeout:.0f} s") from exc
        if done.returncode != 0:
            last = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise BenchError(f"load generator failed (exit {done.returncode}): {last}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        limits = server.limits
    finally:
        server.close()

    held = out["sessions"]
    before, after = out["rss_before_kib"], out["rss_after_kib"]
    per_session = (after - before) / held if held else None
    at_target = None if per_session is None else before + per_session * TARGET_SESSIONS
    idle, loaded = out["relay_idle"], out["relay_loaded"]
    rows = [
        ["idle sessions held", f"{held} of {opts.sessions}"],
        ["registration rate, sessions/s", fmt(held / out["register_seconds"], 0)],
        ["server RSS before, MiB", fmt(before / 1024, 1)],
        ["server RSS with the sessions, MiB", fmt(after / 1024, 1)],
        ["RSS per session, KiB", fmt(per_session, 1)],
        [
            "RSS at 10,000 sessions, MiB",
            fmt(None if at_target is None else at_target / 1024, 1)
            + ("" if held >= TARGET_SESSIONS else " (extrapolated)"),
        ],
        ["relay p50 / p99 / max, ms (idle server)", _relay_cell(idle)],
        ["relay p50 / p99 / max, ms (sessions held)", _relay_cell(loaded)],
        [
            "relay messages sent / received (sessions held)",
            f"{loaded['sent']} / {loaded['received']} at {loaded['rate']:.0f} msg/s",
        ],
    ]
    rss_ok = at_target is not None and at_target * 1024 < RSS_LIMIT_BYTES
    measured_rss = "not measured" if at_target is None else f"{at_target * 1024 / 1e9:.2f} GB"
    if held < TARGET_SESSIONS and at_target is not None:
        measured_rss += f" (extrapolated from {held} sessions)"
    relay_p99 = max(idle.get("p99_ms", float("inf")), loaded.get("p99_ms", float("inf")))
    targets = [
        Target(SPEC.targets[0], measured_rss, rss_ok),
        Target(
            SPEC.targets[1],
            f"p99 {idle.get('p99_ms', float('nan')):.2f} ms idle, "
            f"{loaded.get('p99_ms', float('nan')):.2f} ms with {held} sessions held",
            relay_p99 <= 5.0 and loaded["received"] == loaded["sent"],
        ),
    ]
    notes = [
        f"Load generator: a second process (bench/loadgen.py, aiohttp), {opts.sessions} host "
        f"registrations with up to 200 in flight; relay: {opts.relay_rate} msg/s for "
        f"{opts.relay_seconds:g} s, 3 runs per phase (p50 and p99: medians over the runs; max: "
        "the worst of all), joiner -> server -> host, one-way time measured inside the load "
        "generator (one clock).",
        "GB = 10^9 bytes; RSS from /proc/<pid>/status VmRSS of the beach serve process.",
    ]
    notes.append(
        "beach serve ran with "
        + " ".join(f"{flag} {value}" for flag, value in limits.items())
        + " (its abuse limits would otherwise refuse this load from one address)."
    )
    if out["errors"]:
        notes.append(f"registration errors (first few): {'; '.join(out['errors'])}")
    for name, relay in (("idle", idle), ("sessions held", loaded)):
        if relay.get("error"):
            notes.append(f"relay ({name}): the server closed the connection {relay['error']}")
    return Section(SPEC, rows, notes=notes, targets=targets, data=out)
