"""Join time: from starting `beach join` to the shared screen's first paint (the shell prompt
arriving on the joiner's terminal), one join after another into an idle shared shell.

The parts come from the joiner's own debug log (`--log-file`, millisecond timestamps of the
peer connection's state changes) and from timing process start and imports separately.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from .beach import BeachHost, BeachServer
from .context import Context
from .env import PROMPT, PYTHON, SHELL, beach_bin, proc_env
from .errors import BenchError
from .proxy import TimingProxy
from .results import Section, Spec, Target
from .stats import fmt, median

SPEC = Spec(
    key="join",
    title="Join time (seconds)",
    columns=("join", "median", "min", "max", "runs"),
    labels=(
        "join to first screen",
        "  start to reaching the server (process start, imports)",
        "  server to ICE connecting (signaling, SPAKE2, SDP, aiortc import)",
        "  ICE connecting to connected (ICE checks, DTLS)",
        "  connected to first screen (SCTP, channel, HELLO, snapshot)",
        "python startup (python -c pass)",
        "beach --version (process start, CLI)",
        "import beach_cli.join.session (-X importtime)",
        "import beach_cli.link.rtc, aiortc (-X importtime)",
    ),
    targets=("join to first screen <= 0.8 s",),
)
TIMEOUT = 30.0
_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ beach\.rtc: .*connection (connecting|connected)"
)


def _log_times(path: Path) -> dict[str, float]:
    """Wall-clock times of the joiner's 'connection connecting/connected' debug lines."""
    found: dict[str, float] = {}
    if not path.exists():
        return found
    for line in path.read_text(errors="replace").splitlines():
        m = _LOG_LINE.match(line)
        if m and m.group(2) not in found:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            found[m.group(2)] = stamp.timestamp()
    return found


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def _wall(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, timeout=TIMEOUT, env=proc_env(), capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def _import_seconds(module: str, runs: int) -> list[float]:
    """Cumulative import time of `module` in a fresh interpreter, from -X importtime."""
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [PYTHON, "-X", "importtime", "-c", f"import {module}"],
            check=True,
            timeout=TIMEOUT,
            env=proc_env(),
            capture_output=True,
            text=True,
        )
        for line in done.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == module:
                times.append(int(parts[1]) / 1e6)
                break
        else:
            raise BenchError(f"-X importtime printed no line for {module}")
    return times


def run(ctx: Context) -> Section:
    opts = ctx.options
    total: list[float] = []
    parts: dict[str, list[float]] = {"start": [], "signal": [], "ice": [], "screen": []}
    server = BeachServer(ctx.workdir)
    proxy: TimingProxy | None = None
    host: BeachHost | None = None
    try:
        proxy = TimingProxy(_address(server.url))
        host = BeachHost(server, ctx.workdir, SHELL)
        host.wait_prompt()
        for i in range(opts.joins):
            log = ctx.workdir / f"join-{host.pid}-{i}.log"  # fresh per attempt: logs append
            wall_start = time.time()
            joiner = host.join(log_file=log, server=proxy.url)
            try:
                joiner.pty.read_until(PROMPT.encode(), TIMEOUT)
                painted = time.perf_counter()
                total.append(painted - joiner.started)
            finally:
                joiner.detach(timeout=5.0)
            stamps = _log_times(log)
            contact = proxy.first_after(joiner.started)
            if contact is not None and "connecting" in stamps and "connected" in stamps:
                contact_wall = wall_start + (contact - joiner.started)
                split = {
                    "start": contact - joiner.started,
                    "signal": stamps["connecting"] - contact_wall,
                    "ice": stamps["connected"] - stamps["connecting"],
                    "screen": wall_start + total[-1] - stamps["connected"],
                }
                # Log stamps have millisecond resolution; anything else negative is a bug.
                if all(v > -0.002 for v in split.values()):
                    for key, value in split.items():
                        parts[key].append(value)
            time.sleep(0.2)
    finally:
        if host is not None:
            host.close()
        if proxy is not None:
            proxy.close()
        server.close()

    runs = max(opts.joins, 3)
    measured = [
        total,
        parts["start"],
        parts["signal"],
        parts["ice"],
        parts["screen"],
        _wall([PYTHON, "-c", "pass"], runs),
        _wall([beach_bin(), "--version"], runs),
        _import_seconds("beach_cli.join.session", runs),
        _import_seconds("beach_cli.link.rtc", runs),
    ]
    rows = []
    for label, values in zip(SPEC.labels, measured, strict=True):
        if values:
            spread = [fmt(median(values), 3), fmt(min(values), 3), fmt(max(values), 3)]
            rows.append([label, *spread, str(len(values))])
        else:
            rows.append([label, "-", "-", "-", "0"])
    target = Target(
        SPEC.targets[0],
        f"median {median(total):.3f} s over {len(total)} joins",
        median(total) <= 0.8,
    )
    notes = [
        "Joins one after another into an idle shared shell; each joiner detaches (Ctrl-] d) "
        "before the next starts.",
        "The parts add up to the total: the joiner reaches the server through a timestamping "
        "TCP forwarder (bench/proxy.py); ICE times come from the joiner's debug log "
        "(--log-file, millisecond timestamps). The imports are measured alone in fresh "
        "interpreters; beach imports aiortc in a thread while it talks to the server, so that "
        "cost overlaps the handshake (but not CPU: imports hold the GIL).",
    ]
    data = {label: values for label, values in zip(SPEC.labels, measured, strict=True)}
    return Section(SPEC, rows, notes=notes, targets=[target], data=data)
