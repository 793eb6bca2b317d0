"""`python -m bench`: run the sections, print the tables, rewrite docs/performance.md."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType

from . import (
    browser,
    fanout,
    hostcost,
    join,
    latency,
    predict,
    reallink,
    server,
    throughput,
    transport,
)
from .context import REPO_ROOT, Context, Options, machine
from .report import Run, print_run, write_json, write_markdown
from .results import Section, failed

SECTIONS: dict[str, ModuleType] = {
    "latency": latency,
    "throughput": throughput,
    "hostcost": hostcost,
    "join": join,
    "browser": browser,
    "fanout": fanout,
    "server": server,
    "transport": transport,
    "links": reallink,
    "predict": predict,
}
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "performance.md"
QUIET = 0.10  # --quiet-wait: other processes' share of the CPU that counts as quiet
DISTURBED = 0.25  # --quiet-wait: a section run while others used more than this is rerun once


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: the whole suite in seconds")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these sections (repeatable or comma-separated): {', '.join(SECTIONS)}",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="write the report here (default: docs/performance.md for a full default run; "
        "--quick and --only runs write nothing unless --output is given)",
    )
    p.add_argument("--no-write", action="store_true", help="write no markdown report")
    p.add_argument("--json", type=Path, help="also write every figure as JSON here")
    p.add_argument("--keystrokes", type=int, help="keystrokes per method (latency)")
    p.add_argument("--reps", type=int, help="runs per throughput / host-cost figure")
    p.add_argument("--stream-mb", type=float, help="size of each output stream, MB")
    p.add_argument("--joins", type=int, help="joins to time")
    p.add_argument("--joiners", type=int, help="joiners in the fan-out section")
    p.add_argument("--sessions", type=int, help="idle sessions for the server section")
    p.add_argument("--relay-seconds", type=float, help="seconds of relay traffic")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="on a shared machine: before each section wait up to S seconds for other "
        "processes to use under 10%% of the CPU, and run a section they disturbed (over 25%%) "
        "once more, keeping the quieter attempt",
    )
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    opts = Options.quick() if args.quick else Options()
    changes: dict[str, object] = {}
    for field, value in (
        ("keystrokes", args.keystrokes),
        ("reps", args.reps),
        ("joins", args.joins),
        ("fanout_joiners", args.joiners),
        ("sessions", args.sessions),
        ("relay_seconds", args.relay_seconds),
    ):
        if value is not None:
            changes[field] = value
    if args.stream_mb is not None:
        changes["stream_bytes"] = int(args.stream_mb * 1e6)
    return dataclasses.replace(opts, **changes)


def selected(args: argparse.Namespace) -> list[str]:
    if not args.only:
        return list(SECTIONS)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s): {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return [n for n in SECTIONS if n in names]


def share(before: float | None, after: float | None, seconds: float) -> float | None:
    """CPU other processes used, as a share of all this machine's cores over `seconds`."""
    if before is None or after is None or seconds <= 0:
        return None
    return (after - before) / (seconds * (os.cpu_count() or 1))


def run_section(name: str, ctx: Context) -> Section:
    module = SECTIONS[name]
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    start, others = time.monotonic(), ctx.noise.others_cpu()
    try:
        section: Section = module.run(ctx)
    except Exception as exc:
        section = failed(module.SPEC, f"{type(exc).__name__}: {exc}")
    section.seconds = time.monotonic() - start
    section.others = share(others, ctx.noise.others_cpu(), section.seconds)
    status = f"failed: {section.error}" if section.error else "done"
    noise = "" if section.others is None else f", others used {100 * section.others:.0f}% CPU"
    print(f"bench: {name} {status} ({section.seconds:.0f} s{noise})", file=sys.stderr, flush=True)
    return section


def quieter(new: Section, old: Section) -> bool:
    """Whether `new` is the better attempt: no error beats an error, then less disturbance."""
    if (new.error is None) != (old.error is None):
        return new.error is None
    return (new.others or 0.0) < (old.others or 0.0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    names = selected(args)
    opts = options_from(args)
    output = args.output
    if output is None and not args.quick and not args.only:
        output = DEFAULT_OUTPUT
    if args.no_write:
        output = None
    mode = "quick" if args.quick else "default sizes"
    run = Run(datetime.now().astimezone(), machine(), mode, argv, [])
    began = time.monotonic()
    ctx = Context(opts, require_ssh=os.environ.get("CI") == "true")
    try:
        for name in names:
            # On a shared machine (--quiet-wait), a section that other processes disturbed is
            # run once more, and the quieter of the two attempts is kept.
            attempts = 2 if args.quiet_wait > 0 else 1
            kept: Section | None = None
            for _ in range(attempts):
                if args.quiet_wait > 0:
                    waited = ctx.noise.wait_quiet(QUIET, args.quiet_wait)
                    print(f"bench: waited {waited:.0f} s for a quiet machine", file=sys.stderr)
                section = run_section(name, ctx)
                if kept is None or quieter(section, kept):
                    kept = section
                if section.others is None or section.others < DISTURBED:
                    break
            assert kept is not None
            run.sections.append(kept)
    finally:
        ctx.close()
    run.seconds = time.monotonic() - began
    run.machine["load_end"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print_run(run)
    if output is not None:
        write_markdown(run, output)
        print(f"bench: wrote {output}", file=sys.stderr)
    if args.json is not None:
        write_json(run, args.json)
    return 1 if any(s.error for s in run.sections) else 0


if __name__ == "__main__":
    sys.exit(main())
