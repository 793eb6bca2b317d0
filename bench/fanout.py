"""Fan-out: one host, many joiners, one stream. The beach host's CPU time over the stream
(utime + stime from /proc/<pid>/stat) and every joiner's throughput."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .beach import BeachServer
from .context import Context
from .results import Section, Spec
from .shells import BeachShell
from .stats import fmt, median

STREAM = "ls"
SLACK = 64 * 1024  # the host screen also gets title-bar notices; a skipped backlog is >= 4 MiB
SPEC = Spec(
    key="fanout",
    title="Fan-out: one host, N joiners (ls -lR /usr)",
    columns=("fan-out", "value"),
    labels=(
        "joiners",
        "host's own screen, MB/s",
        "host CPU, s",
        "host CPU, % of one core",
        "host waiting for a CPU, % of the run",
        "joiner MB/s, min",
        "joiner MB/s, median",
        "joiner MB/s, max",
        "joiners that got every byte",
        "joiner CPU, % of one core (median)",
    ),
)


@dataclass
class FanRun:
    host_seconds: float
    host_bytes: int
    host_cpu: float
    host_wait: float
    joiner_seconds: list[float]
    joiner_bytes: list[int]
    joiner_cpu: list[float]


def run(ctx: Context) -> Section:
    opts = ctx.options
    stream = ctx.stream(STREAM)
    n = opts.fanout_joiners
    runs: list[FanRun] = []
    server = BeachServer(ctx.workdir)
    shell: BeachShell | None = None
    try:
        shell = BeachShell(server, ctx.workdir, joiners=n)
        for _ in range(max(opts.reps - 1, 1)):
            seen = shell.timed_cat(stream.path, opts.timeout)
            host, joiners = seen[0], seen[1:]
            runs.append(
                FanRun(
                    host.seconds,
                    host.bytes,
                    host.cpu or 0.0,
                    host.cpu_wait or 0.0,
                    [j.seconds for j in joiners],
                    [j.bytes for j in joiners],
                    [j.cpu or 0.0 for j in joiners],
                )
            )
    finally:
        if shell is not None:
            shell.close()
        server.close()

    # The run with the median host time stands for all of them.
    shown = sorted(runs, key=lambda r: r.host_seconds)[len(runs) // 2]
    host_seconds, cpu = shown.host_seconds, shown.host_cpu
    joiner_mbps = sorted(stream.size / s / 1e6 for s in shown.joiner_seconds)
    joiner_share = [c / s for c, s in zip(shown.joiner_cpu, shown.joiner_seconds, strict=True)]
    complete = sum(b >= shown.host_bytes - SLACK for b in shown.joiner_bytes)
    rows = [
        ["joiners", str(n)],
        ["host's own screen, MB/s", fmt(stream.size / host_seconds / 1e6, 1)],
        ["host CPU, s", fmt(cpu, 2)],
        ["host CPU, % of one core", f"{100 * cpu / host_seconds:.0f}%"],
        ["host waiting for a CPU, % of the run", f"{100 * shown.host_wait / host_seconds:.0f}%"],
        ["joiner MB/s, min", fmt(joiner_mbps[0], 1)],
        ["joiner MB/s, median", fmt(median(joiner_mbps), 1)],
        ["joiner MB/s, max", fmt(joiner_mbps[-1], 1)],
        ["joiners that got every byte", f"{complete} of {n}"],
        ["joiner CPU, % of one core (median)", f"{100 * median(joiner_share):.0f}%"],
    ]
    notes = [
        f"{stream.mb:.1f} MB stream, {len(runs)} run(s), the run with the median host time "
        "shown; joiner MB/s = stream bytes / seconds to the end marker on that joiner's screen.",
        "A joiner that did not get every byte was more than 4 MiB behind at some point and was "
        "sent a snapshot instead of the backlog (beach's design: the host never waits).",
        "All joiners run on this machine: 'host waiting for a CPU' (run-queue delay of its main "
        "thread, /proc/<pid>/schedstat) shows how much they and the rest held the host back.",
    ]
    return Section(
        SPEC,
        rows,
        notes=notes,
        data={"runs": [asdict(r) for r in runs], "stream_bytes": stream.size},
    )
