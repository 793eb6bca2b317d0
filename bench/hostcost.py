"""The host's cost of sharing: how long the host's own `cat` takes, on the host's own screen,
with 0, 1 and 3 joiners attached (the joiners are drained as fast as they deliver), and the
beach host process's CPU time for it. Beside it, the same cat in a plain PTY, and with 0
joiners and beach's screen state (the late-joiner history) switched off."""

from __future__ import annotations

from . import cores
from .beach import BeachServer
from .context import Context
from .results import Section, Spec, Target
from .shells import BeachShell, PlainShell, Shell
from .stats import fmt, fmt_ratio, median, ratio
from .streams import KEYS

JOINER_COUNTS = (0, 1, 3)
# Row label -> configuration key.
CONFIGS = {
    "plain pty (no beach)": "pty",
    "beach, 0 joiners, screen state off": "off",
    "beach, 0 joiners": "0",
    "beach, 1 joiner": "1",
    "beach, 3 joiners": "3",
    "split cores: beach, 0 joiners": "0s",
    "split cores: beach, 3 joiners": "3s",
}
# Split cores: the host, its shell and the benchmark reading its screen on one core; the
# joiners and their screens on the other(s), as if on machines of their own.
BASELINE = {"0s": "0s", "3s": "0s"}
SCREEN_STATE_OFF = {"BEACH_SCREEN_STATE": "off"}
SPEC = Spec(
    key="hostcost",
    title="Host cost of sharing: the host's own cat, seconds (median) and x 0 joiners",
    columns=(
        "host's screen",
        *(f"{key} {what}" for key in KEYS for what in ("s", "x0")),
        "host CPU s (ls)",
        "host CPU wait s (ls)",
        "joiners CPU s (ls)",
    ),
    labels=tuple(CONFIGS),
    targets=("host cat with 3 joiners <= 1.25x with none",),
)


class Runs:
    """Per configuration: seconds per stream, and CPU figures for the ls runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, list[float]]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.wait: dict[str, list[float]] = {}
        self.joiners_cpu: dict[str, list[float]] = {}

    def measure(self, config: str, shell: Shell, ctx: Context) -> None:
        for _ in range(ctx.options.reps):
            for stream in ctx.streams:
                seen = shell.timed_cat(stream.path, ctx.options.timeout)
                self.seconds.setdefault(config, {}).setdefault(stream.key, []).append(
                    seen[0].seconds
                )
                if stream.key == "ls" and seen[0].cpu is not None:
                    self.cpu.setdefault(config, []).append(seen[0].cpu)
                    self.wait.setdefault(config, []).append(seen[0].cpu_wait or 0.0)
                    joiners = sum(s.cpu or 0.0 for s in seen[1:])
                    self.joiners_cpu.setdefault(config, []).append(joiners)


def run(ctx: Context) -> Section:
    opts = ctx.options
    runs = Runs()
    plain = PlainShell()
    try:
        runs.measure("pty", plain, ctx)
    finally:
        plain.close()

    server = BeachServer(ctx.workdir)
    shell: BeachShell | None = None
    try:
        shell = BeachShell(server, ctx.workdir, joiners=0, env=SCREEN_STATE_OFF)
        runs.measure("off", shell, ctx)
        shell.close()
        shell = BeachShell(server, ctx.workdir, joiners=0)
        for count in JOINER_COUNTS:
            shell.add_joiners(count - len(shell.joiners))
            runs.measure(str(count), shell, ctx)
        shell.close()
        shell = None
        if cores.can_split():
            shell = BeachShell(server, ctx.workdir, joiners=0)
            with cores.split([shell.pid], []):
                runs.measure("0s", shell, ctx)
            shell.add_joiners(3)
            with cores.split([shell.pid], shell.joiner_side_pids()):
                runs.measure("3s", shell, ctx)
    finally:
        if shell is not None:
            shell.close()
        server.close()

    med = {c: {k: median(v) for k, v in per.items()} for c, per in runs.seconds.items()}
    rows = []
    for label, config in CONFIGS.items():
        if config not in med:
            continue
        row = [label]
        base = BASELINE.get(config, "0")
        for key in KEYS:
            row += [fmt(med[config][key], 2), fmt_ratio(ratio(med[config][key], med[base][key]))]
        for figures in (runs.cpu, runs.wait, runs.joiners_cpu):
            row.append(fmt(median(figures[config]), 2) if config in figures else "-")
        rows.append(row)
    ratios = {key: ratio(med["3"][key], med["0"][key]) for key in KEYS}
    worst_realistic = max(r for k, r in ratios.items() if k in ("ls", "build") and r is not None)
    measured = ", ".join(f"{k}: {r:.2f}x" for k, r in ratios.items() if r is not None)
    if "3s" in med:
        split_ratios = {key: ratio(med["3s"][key], med["0s"][key]) for key in KEYS}
        measured += "; split cores " + ", ".join(
            f"{k}: {r:.2f}x" for k, r in split_ratios.items() if r is not None
        )
    target = Target(SPEC.targets[0], measured, worst_realistic <= 1.25)
    notes = [
        f"{opts.reps} run(s) per figure; seconds from the keystroke starting `cat` to the end "
        "marker on the host's own screen; every joiner's screen is drained concurrently, each by a "
        "process of its own (bench/drain_program.py).",
        "CPU: the beach host process, and all joiner processes together, during the ls runs. "
        "The joiners run on this same machine and compete with the host for its cores; CPU wait "
        "is the time the host's main thread was runnable but had no CPU (/proc/<pid>/schedstat).",
        "Streams: ls = ls -lR /usr, build = build log (ANSI colours), random = random (base64). "
        "The target is judged on the realistic ones (ls, build); random is the worst case.",
        "Screen state off: the host started with BEACH_SCREEN_STATE=off (no late-joiner screen "
        "history on the hot path), to show what keeping that history costs.",
        "Split cores: the host, its shell and this benchmark (which reads the host's screen) "
        "pinned to one core, the joiners and the processes draining their screens to the "
        "other, as if the joiners sat on machines of their own; x0 there is against the split "
        "0-joiner row. What remains is the host's own work per joiner. The verdict is judged "
        "on the unsplit rows.",
    ]
    data = {
        "seconds": runs.seconds,
        "median_seconds": med,
        "host_cpu_seconds_ls": runs.cpu,
        "host_cpu_wait_seconds_ls": runs.wait,
        "joiners_cpu_seconds_ls": runs.joiners_cpu,
        "ratio_3_vs_0": ratios,
        "ratio_3_vs_0_split_cores": (
            {key: ratio(med["3s"][key], med["0s"][key]) for key in KEYS} if "3s" in med else None
        ),
    }
    return Section(SPEC, rows, notes=notes, targets=[target], data=data)
