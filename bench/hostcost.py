"""The host's cost of sharing: how long the host's own `cat` takes, on the host's own screen,
with 0, 1 and 3 joiners attached (the joiners are drained as fast as they deliver), and the
beach host process's CPU time for it. Beside it, the same cat in a plain PTY."""

from __future__ import annotations

from .beach import BeachServer
from .context import Context
from .results import Section, Spec, Target
from .shells import BeachShell, PlainShell
from .stats import fmt, fmt_ratio, median, ratio
from .streams import KEYS

JOINER_COUNTS = (0, 1, 3)
SPEC = Spec(
    key="hostcost",
    title="Host cost of sharing: the host's own cat, seconds (median) and x 0 joiners",
    columns=(
        "host's screen",
        *(f"{key} {what}" for key in KEYS for what in ("s", "x0")),
        "host CPU s (ls)",
        "joiners CPU s (ls)",
    ),
    labels=("plain pty (no beach)", "beach, 0 joiners", "beach, 1 joiner", "beach, 3 joiners"),
    targets=("host cat with 3 joiners <= 1.25x with none",),
)


def run(ctx: Context) -> Section:
    opts = ctx.options
    streams = ctx.streams
    # seconds[config][stream key] -> runs; cpu[config] -> host CPU seconds for the ls runs
    seconds: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, list[float]] = {}
    joiners_cpu: dict[str, list[float]] = {}
    joiner_seconds: dict[str, dict[str, list[float]]] = {}

    plain = PlainShell()
    try:
        for _ in range(opts.reps):
            for stream in streams:
                seen = plain.timed_cat(stream.path, opts.timeout)
                seconds.setdefault("pty", {}).setdefault(stream.key, []).append(seen[0].seconds)
    finally:
        plain.close()

    server = BeachServer(ctx.workdir)
    shell: BeachShell | None = None
    try:
        shell = BeachShell(server, ctx.workdir, joiners=0)
        for count in JOINER_COUNTS:
            shell.add_joiners(count - len(shell.joiners))
            config = str(count)
            for _ in range(opts.reps):
                for stream in streams:
                    seen = shell.timed_cat(stream.path, opts.timeout)
                    if stream.key == "ls":
                        cpu.setdefault(config, []).append(seen[0].cpu or 0.0)
                        joiners_cpu.setdefault(config, []).append(
                            sum(s.cpu or 0.0 for s in seen[1:])
                        )
                    seconds.setdefault(config, {}).setdefault(stream.key, []).append(
                        seen[0].seconds
                    )
                    if len(seen) > 1:
                        joiner_seconds.setdefault(config, {}).setdefault(stream.key, []).append(
                            max(s.seconds for s in seen[1:])
                        )
    finally:
        if shell is not None:
            shell.close()
        server.close()

    med = {c: {k: median(v) for k, v in per.items()} for c, per in seconds.items()}
    rows = []
    for label, config in zip(SPEC.labels, ("pty", *map(str, JOINER_COUNTS)), strict=True):
        row = [label]
        for key in KEYS:
            row += [fmt(med[config][key], 2), fmt_ratio(ratio(med[config][key], med["0"][key]))]
        row.append(fmt(median(cpu[config]), 2) if config in cpu else "-")
        row.append(fmt(median(joiners_cpu[config]), 2) if config in joiners_cpu else "-")
        rows.append(row)
    ratios = {key: ratio(med["3"][key], med["0"][key]) for key in KEYS}
    worst_realistic = max(r for k, r in ratios.items() if k in ("ls", "build") and r is not None)
    target = Target(
        SPEC.targets[0],
        ", ".join(f"{k}: {r:.2f}x" for k, r in ratios.items() if r is not None),
        worst_realistic <= 1.25,
    )
    notes = [
        f"{opts.reps} run(s) per figure; seconds from the keystroke starting `cat` to the end "
        "marker on the host's own screen; every joiner's screen is drained concurrently.",
        "CPU: the beach host process, and all joiner processes together, during the ls runs. "
        "The joiners run on this same machine and compete with the host for its cores.",
        "Streams: ls = ls -lR /usr, build = build log (ANSI colours), random = random (base64). "
        "The target is judged on the realistic ones (ls, build); random is the worst case.",
    ]
    data = {
        "seconds": seconds,
        "median_seconds": med,
        "host_cpu_seconds_ls": cpu,
        "joiners_cpu_seconds_ls": joiners_cpu,
        "joiner_seconds": joiner_seconds,
        "ratio_3_vs_0": ratios,
    }
    return Section(SPEC, rows, notes=notes, targets=[target], data=data)
