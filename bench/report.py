"""Presenting a run: tables on the terminal (rich), docs/performance.md, and a JSON dump."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .results import Section, Target


@dataclass
class Run:
    started: datetime
    machine: dict[str, str]
    mode: str  # "default sizes", "quick", ...
    argv: list[str]
    sections: list[Section]
    seconds: float = 0.0

    @property
    def targets(self) -> list[Target]:
        return [t for s in self.sections for t in s.targets]


def circumstances(section: Section) -> str:
    text = f"{section.seconds:.0f} s"
    if section.others is not None:
        text += f"; other processes used {100 * section.others:.0f}% of the machine's CPU meanwhile"
    return text


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


# -- terminal --------------------------------------------------------------------------------


def print_run(run: Run, file: Any = None) -> None:
    out = file or sys.stdout
    # Off a terminal (CI logs, the smoke test) use a wide page so no label is wrapped or cut.
    width = None if out.isatty() else max(shutil.get_terminal_size().columns, 200)
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    m = run.machine
    console.print(
        f"[bold]beach benchmark[/] {run.started:%Y-%m-%d %H:%M} ({run.mode}): {m['cpu']}, "
        f"{m['cores']} cores; Python {m['python']}; aiortc {m['aiortc']}; beach {m['beach']}; "
        f"load average at start {m['load']}"
    )
    for section in run.sections:
        console.print(f"\n[bold]{section.spec.title}[/] [dim]({circumstances(section)})[/]")
        table = Table()
        for i, column in enumerate(section.spec.columns):
            table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in section.rows:
            table.add_row(*row)
        console.print(table)
        for note in section.notes:
            console.print(f"  {note}", style="red" if note.startswith("error") else "dim")
    console.print("\n[bold]Targets[/]")
    targets = Table()
    for column in ("target", "measured", "verdict"):
        targets.add_column(column)
    for t in run.targets:
        style = {True: "green", False: "red", None: "yellow"}[t.met]
        targets.add_row(t.name, t.measured, f"[{style}]{verdict(t.met)}[/]")
    console.print(targets)
    console.print(f"total {run.seconds:.0f} s")


# -- markdown --------------------------------------------------------------------------------

ANALYSIS = Path(__file__).with_name("ANALYSIS.md")

METHOD = """\
## How it is measured

Run with `make bench` (`python -m bench`; `--quick` for tiny sizes, `--only NAME` for one
section, `--help` for the rest). Every figure is taken in the same run as the baselines it is
compared with, methods interleaved; figures are medians over the repeated runs (latency:
percentiles over all keystrokes). All processes run on this one machine: `beach serve` on
127.0.0.1, host and joiners connect peer-to-peer over the machine's own address (aioice never
uses 127.0.0.1). `beach host` and every `beach join` run in pseudo-terminals whose master ends
the benchmark holds and drains continuously, as a terminal emulator would: one reader thread
for the host's screen and the baselines', and a process of its own per joiner's screen
(`bench/drain_program.py`; each joiner's screen would be on another machine). Joiners share this
machine's cores with the host here: the CPU and CPU-wait figures show how much that matters, and
the split-core host-cost rows put them on a core of their own. Each section
says how much CPU processes outside the benchmark used while it ran (`bench/noise.py` samples
/proc): figures taken while that is high are noisier.

- **Latency**: the shared program puts its terminal in raw mode and echoes every byte
  (`bench/echo_program.py`). The benchmark types one byte into the joiner's terminal and waits
  for the echo to come back there before sending the next. Floor: the same program on a plain
  PTY. ssh: `ssh -tt` to a private OpenSSH sshd the benchmark starts on a loopback port with a
  throwaway host key and user key.
- **Throughput**: `cat FILE` then a unique end marker, typed into an interactive bash; MB/s =
  file bytes / time from the keystroke to the marker on the watched screen (the joiner's for
  beach). Streams: a recorded `ls -lR /usr` (repeated if /usr lists less than the stream
  size), a synthetic coloured build log, random bytes as base64.
- **Host cost**: the same cat timed on the host's own screen with 0, 1 and 3 joiners attached,
  and with 0 joiners and `BEACH_SCREEN_STATE=off` (no late-joiner history on the hot path).
- **Join time**: from spawning `beach join` to the shell prompt on its terminal; the joiner
  reaches the server through a timestamping TCP forwarder (`bench/proxy.py`), which splits
  start-up from the handshake.
- **Fan-out**: one host, N joiners, one stream; host CPU from `/proc/<pid>/stat`.
- **Server**: a load generator process (`bench/loadgen.py`, aiohttp) registers N idle host
  sessions and measures `signal` relay latency joiner -> server -> host at a fixed rate.
"""


def _md_table(columns: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").strip() or " "

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |"]
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(columns) - 1)) + " |")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def markdown(run: Run) -> str:
    m = run.machine
    lines = [
        "# beach performance",
        "",
        "Generated by `python -m bench`; do not edit by hand (rerun `make bench` instead).",
        "",
        *_md_table(
            ("run", ""),
            [
                ["date", f"{run.started:%Y-%m-%d %H:%M %Z}".strip()],
                ["machine", f"{m['cpu']}, {m['cores']} cores, {m['os']}"],
                [
                    "load average (1, 5, 15 min)",
                    f"{m['load']} at the start, {m.get('load_end', '?')} at the end",
                ],
                ["Python", m["python"]],
                ["aiortc", m["aiortc"]],
                ["beach", m["beach"]],
                ["mode", f"{run.mode}: `{' '.join(['python -m bench', *run.argv])}`"],
                ["duration", f"{run.seconds:.0f} s"],
            ],
        ),
        "",
        "## Targets",
        "",
        *_md_table(
            ("target", "measured", "verdict"),
            [[t.name, t.measured, f"**{verdict(t.met)}**"] for t in run.targets],
        ),
        "",
    ]
    for section in run.sections:
        lines += [f"## {section.spec.title}", "", f"_{circumstances(section)}_", ""]
        lines += _md_table(section.spec.columns, section.rows)
        lines.append("")
        lines += [f"- {note}" for note in section.notes]
        lines.append("")
    if ANALYSIS.exists():  # hand-written: why the unmet targets are unmet, and what would help
        lines += [ANALYSIS.read_text().rstrip(), ""]
    lines.append(METHOD)
    return "\n".join(lines)


def write_markdown(run: Run, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(run))


def write_json(run: Run, path: Path) -> None:
    doc = {
        "started": run.started.isoformat(),
        "machine": run.machine,
        "mode": run.mode,
        "seconds": run.seconds,
        "sections": {
            s.spec.key: {
                "title": s.spec.title,
                "columns": list(s.spec.columns),
                "rows": s.rows,
                "notes": s.notes,
                "error": s.error,
                "seconds": s.seconds,
                "data": s.data,
            }
            for s in run.sections
        },
        "targets": [{"name": t.name, "measured": t.measured, "met": t.met} for t in run.targets],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
