"""Keystroke echo latency: write one byte to a terminal, time until the echo reads back.

The shared program puts its terminal in raw mode and echoes each byte (echo_program.py). We
act as the person at the keyboard: for beach that is the joiner's terminal (so the figure
includes `beach join`'s own terminal handling), for ssh the `ssh -tt` client's terminal, and
for the floor the PTY running the echo program itself. One keystroke at a time: the next byte
is sent only after the previous echo arrived.
"""

from __future__ import annotations

import time
from pathlib import Path

from .beach import BeachHost, BeachServer
from .context import Context
from .echo_program import QUIT, READY
from .env import COLS, PYTHON, ROWS, proc_env
from .ptys import PtyProcess
from .results import Section, Spec, Target
from .ssh import NOT_AVAILABLE
from .stats import fmt, fmt_ratio, percentile, ratio

SPEC = Spec(
    key="latency",
    title="Keystroke echo latency",
    columns=(
        "keystroke echo",
        "beach joiner",
        "beach host (local)",
        "direct pty",
        "ssh",
        "beach / direct",
        "beach / ssh",
    ),
    labels=("p50 (ms)", "p99 (ms)", "max (ms)"),
    targets=("keystroke echo p50 <= 0.6 ms and p99 <= 2 ms",),
)
KEYS = b"abcdefghijklmnopqrstuvwxyz0123456789"
START_TIMEOUT = 30.0


def echo_argv() -> list[str]:
    return [PYTHON, str(Path(__file__).with_name("echo_program.py"))]


def type_and_time(pty: PtyProcess, count: int, warmup: int, timeout: float) -> list[float]:
    """Echo round trips in seconds, each keystroke sent after the previous one came back."""
    pty.discard()
    samples: list[float] = []
    for i in range(warmup + count):
        key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
        start = time.perf_counter()
        pty.write(key)
        pty.read_until(key, timeout)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed)
    return samples


def _finish(pty: PtyProcess) -> None:
    """Ctrl-D ends the echo program (and with it an ssh or beach session)."""
    if pty.alive():
        pty.write(bytes([QUIT]))
        pty.wait(10.0)


def run_direct(ctx: Context, count: int) -> list[float]:
    pty = PtyProcess(echo_argv(), proc_env(), COLS, ROWS, name="direct-echo")
    try:
        pty.read_until(READY, START_TIMEOUT)
        samples = type_and_time(pty, count, ctx.options.warmup, ctx.options.timeout)
        _finish(pty)
        return samples
    finally:
        pty.close()


def run_ssh(ctx: Context, count: int) -> list[float]:
    assert ctx.ssh is not None
    pty = PtyProcess(ctx.ssh.argv(echo_argv()), proc_env(), COLS, ROWS, name="ssh-echo")
    try:
        pty.read_until(READY, START_TIMEOUT)
        samples = type_and_time(pty, count, ctx.options.warmup, ctx.options.timeout)
        _finish(pty)
        return samples
    finally:
        pty.close()


def run_beach(ctx: Context, server: BeachServer, count: int) -> tuple[list[float], list[float]]:
    """Echo times typed at the joiner (the figure) and, before anyone joined, at the host's
    own keyboard (beach's local passthrough alone)."""
    opts = ctx.options
    host = BeachHost(server, ctx.workdir, echo_argv())
    try:
        host.tap.wait(host.tap.expect(READY, seen_ok=True), START_TIMEOUT)
        host.pty.untap()
        local = type_and_time(host.pty, count, opts.warmup, opts.timeout)
        host.tap = host.pty.tap()  # from here on the host's screen is drained as usual
        joiner = host.join()
        joiner.pty.read_until(READY, START_TIMEOUT)  # the first screen, from the snapshot
        remote = type_and_time(joiner.pty, count, opts.warmup, opts.timeout)
        _finish(joiner.pty)
        host.pty.wait(10.0)
        return remote, local
    finally:
        host.close()


def run(ctx: Context) -> Section:
    opts = ctx.options
    per_round = max(opts.keystrokes // opts.rounds, 1)
    has_ssh = ctx.ssh is not None
    samples: dict[str, list[float]] = {"beach": [], "host": [], "direct": [], "ssh": []}
    server = BeachServer(ctx.workdir)
    try:
        for _ in range(opts.rounds):  # interleaved, so drift hits every method alike
            samples["direct"] += run_direct(ctx, per_round)
            remote, local = run_beach(ctx, server, per_round)
            samples["beach"] += remote
            samples["host"] += local
            if has_ssh:
                samples["ssh"] += run_ssh(ctx, per_round)
    finally:
        server.close()

    figures: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        if values:
            figures[name] = {
                "p50": percentile(values, 50) * 1e3,
                "p99": percentile(values, 99) * 1e3,
                "max": max(values) * 1e3,
                "n": len(values),
            }
    rows = []
    for label, key in zip(SPEC.labels, ("p50", "p99", "max"), strict=True):
        beach = figures["beach"][key]
        direct = figures["direct"][key]
        ssh = figures["ssh"][key] if has_ssh else None
        rows.append(
            [
                label,
                fmt(beach, 3),
                fmt(figures["host"][key], 3),
                fmt(direct, 3),
                fmt(ssh, 3) if has_ssh else NOT_AVAILABLE,
                fmt_ratio(ratio(beach, direct)),
                fmt_ratio(ratio(beach, ssh)) if has_ssh else NOT_AVAILABLE,
            ]
        )
    b = figures["beach"]
    target = Target(
        SPEC.targets[0],
        f"p50 {b['p50']:.3f} ms, p99 {b['p99']:.3f} ms",
        b["p50"] <= 0.6 and b["p99"] <= 2.0,
    )
    notes = [
        f"{len(samples['beach'])} keystrokes per method ({opts.rounds} round(s) of {per_round} "
        f"after {opts.warmup} warm-up keystrokes each, fresh processes per round).",
        "beach joiner: typed into `beach join`'s terminal, echoed back there (the figure). "
        "beach host (local): typed at `beach host`'s own keyboard before anyone joined, echoed "
        "on its own screen: beach's PTY passthrough without the network path.",
    ]
    data = {"figures": figures, "samples_ms": {k: [v * 1e3 for v in s] for k, s in samples.items()}}
    return Section(SPEC, rows, notes=notes, targets=[target], data=data)
