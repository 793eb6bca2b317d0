"""Output throughput to a joiner: `cat FILE` in the shared shell, timed from the keystroke that
starts it to the end marker appearing on the joiner's screen. Beside it, the same cat in a
plain PTY (the host's own terminal alone) and behind `ssh -tt`."""

from __future__ import annotations

from dataclasses import asdict

from .beach import BeachServer
from .context import Context
from .results import Section, Spec, Target
from .shells import BeachShell, PlainShell, Seen, Shell, SshShell
from .ssh import NOT_AVAILABLE
from .stats import fmt, fmt_ratio, median, ratio
from .streams import LABELS, REALISTIC

SPEC = Spec(
    key="throughput",
    title="Output throughput to one joiner (MB/s of the stream, median)",
    columns=(
        "stream",
        "MB",
        "beach joiner",
        "plain pty",
        "ssh -tt",
        "beach / pty",
        "beach / ssh",
        "joiner got",
        "CPU: host / joiner / ssh",
    ),
    labels=LABELS,
    targets=("throughput to a joiner >= ssh's on realistic output",),
)


def _cpu_pct(runs: list[Seen]) -> str:
    """Median CPU of the process behind a screen, as % of one core over its own run time."""
    shares = [r.cpu / r.seconds for r in runs if r.cpu is not None and r.seconds > 0]
    return f"{100 * median(shares):.0f}%" if shares else "-"


def run(ctx: Context) -> Section:
    opts = ctx.options
    streams = ctx.streams
    ssh = ctx.ssh
    # seen[method][stream key] -> one list of screens per run (beach: host screen, joiner screen)
    seen: dict[str, dict[str, list[list[Seen]]]] = {}
    server = BeachServer(ctx.workdir)
    shells: dict[str, Shell] = {}
    try:
        shells["pty"] = PlainShell()
        if ssh is not None:
            shells["ssh"] = SshShell(ssh)
        shells["beach"] = BeachShell(server, ctx.workdir, joiners=1)
        for _ in range(opts.reps):  # interleaved, so drift hits every method alike
            for stream in streams:
                for name, shell in shells.items():
                    screens = shell.timed_cat(stream.path, opts.timeout)
                    seen.setdefault(name, {}).setdefault(stream.key, []).append(screens)
    finally:
        for shell in shells.values():
            shell.close()
        server.close()

    def mbps(name: str, key: str, size: int) -> float | None:
        if name not in seen:
            return None
        return size / median([screens[-1].seconds for screens in seen[name][key]]) / 1e6

    rows = []
    data: dict[str, dict[str, object]] = {}
    for stream in streams:
        beach = mbps("beach", stream.key, stream.size)
        pty = mbps("pty", stream.key, stream.size)
        via_ssh = mbps("ssh", stream.key, stream.size)
        beach_runs = seen["beach"][stream.key]
        host_bytes = sum(screens[0].bytes for screens in beach_runs)
        got = sum(screens[1].bytes for screens in beach_runs) / max(host_bytes, 1)
        cpu = [
            _cpu_pct([screens[0] for screens in beach_runs]),
            _cpu_pct([screens[1] for screens in beach_runs]),
            _cpu_pct([screens[0] for screens in seen["ssh"][stream.key]]) if ssh else "-",
        ]
        rows.append(
            [
                stream.label,
                fmt(stream.mb, 1),
                fmt(beach, 1),
                fmt(pty, 1),
                fmt(via_ssh, 1) if ssh else NOT_AVAILABLE,
                fmt_ratio(ratio(beach, pty)),
                fmt_ratio(ratio(beach, via_ssh)) if ssh else NOT_AVAILABLE,
                f"{100 * got:.1f}%",
                " / ".join(cpu),
            ]
        )
        data[stream.key] = {
            "bytes": stream.size,
            "mbps": {"beach": beach, "pty": pty, "ssh": via_ssh},
            "runs": {
                name: [[asdict(screen) for screen in screens] for screens in per[stream.key]]
                for name, per in seen.items()
            },
            "joiner_got": got,
        }
    if ssh is None:
        target = Target(SPEC.targets[0], NOT_AVAILABLE, None)
    else:
        met = True
        measured = []
        for stream in (s for s in streams if s.key in REALISTIC):
            beach, via_ssh = (mbps(n, stream.key, stream.size) for n in ("beach", "ssh"))
            met = met and beach is not None and via_ssh is not None and beach >= via_ssh
            measured.append(f"{stream.label}: {fmt(beach, 1)} vs ssh {fmt(via_ssh, 1)} MB/s")
        target = Target(SPEC.targets[0], "; ".join(measured), met)
    notes = [
        f"{opts.reps} run(s) per figure, methods interleaved; MB/s = stream bytes / seconds from "
        "the keystroke starting `cat` to the end marker on the watched screen.",
        "'joiner got' = bytes the joiner's terminal received / bytes the host's terminal "
        "received during the same runs (below 100% means beach skipped output for a lagging "
        "joiner and sent a snapshot instead).",
        "CPU: median CPU time of the beach host, the beach joiner and the ssh client processes "
        "as % of one core over the run (from /proc/<pid>/stat); all share this machine's cores.",
    ]
    return Section(SPEC, rows, notes=notes, targets=[target], data=data)
