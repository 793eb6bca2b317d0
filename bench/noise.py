"""How busy the rest of the machine was: CPU time used by processes that are not the benchmark's
(neither the benchmark nor its descendants), sampled from /proc by a separate process so the
sampling never competes with the measurements for the benchmark's GIL.

    python -m bench.noise ROOT_PID OUTPUT_FILE

appends "monotonic_seconds others_cpu_seconds" lines to OUTPUT_FILE every INTERVAL seconds,
until ROOT_PID is gone or it is terminated (bounded by MAX_SECONDS anyway).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

INTERVAL = 0.5
MAX_SECONDS = 3600.0
TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, utime + stime ticks, start time ticks) of every readable process."""
    out: dict[int, tuple[int, int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]))
    return out


def _uptime_ticks() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) * TICK


def sample(root: int, output: Path) -> None:
    os.nice(19)  # never take a CPU from what is being measured
    begun = _uptime_ticks()
    seen: dict[int, int] = {}  # pid -> cpu ticks already counted
    others = 0
    deadline = time.monotonic() + MAX_SECONDS
    with open(output, "a") as out:
        while time.monotonic() < deadline and os.path.exists(f"/proc/{root}"):
            procs = _processes()
            mine = {root}
            changed = True
            while changed:  # descendants of root, whatever their depth
                changed = False
                for pid, (ppid, _, _) in procs.items():
                    if ppid in mine and pid not in mine:
                        mine.add(pid)
                        changed = True
            for pid, (_, ticks, started) in procs.items():
                if pid in mine:
                    continue
                if pid in seen:
                    others += ticks - seen[pid]
                elif started >= begun:  # born since we began: all its time is in the window
                    others += ticks
                seen[pid] = ticks
            out.write(f"{time.monotonic():.3f} {others / TICK:.3f}\n")
            out.flush()
            time.sleep(INTERVAL)


class NoiseMeter:
    """Starts the sampler; `others_cpu()` is the CPU seconds other processes have used so far."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "noise.txt"
        self.path.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.noise", str(os.getpid()), str(self.path)],
            cwd=str(Path(__file__).resolve().parent.parent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5.0
        while self.others_cpu() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first sample is the zero point

    def others_cpu(self) -> float | None:
        lines = self.path.read_text().splitlines()
        return float(lines[-1].split()[1]) if lines else None

    def recent_share(self, window: float = 3.0) -> float | None:
        """Share of the machine's CPU other processes used over the last `window` seconds."""
        samples = [tuple(map(float, line.split())) for line in self.path.read_text().splitlines()]
        if len(samples) < 2:
            return None
        end_t, end_cpu = samples[-1]
        start_t, start_cpu = next(((t, c) for t, c in samples if t >= end_t - window), samples[0])
        if end_t <= start_t:
            return None
        return (end_cpu - start_cpu) / ((end_t - start_t) * (os.cpu_count() or 1))

    def wait_quiet(self, limit: float, timeout: float) -> float:
        """Wait (at most `timeout` s) until other processes use under `limit` of the CPU;
        returns the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            share = self.recent_share()
            if share is not None and share < limit:
                break
            time.sleep(0.5)
        return time.monotonic() - start

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)


def main() -> int:
    sample(int(sys.argv[1]), Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
