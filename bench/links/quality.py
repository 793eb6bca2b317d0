"""What a shaped link really gives: UDP round trips, and a bulk TCP rate each way counted
where the bytes arrive (probe_program.py on both sides)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..env import stop_process
from ..errors import BenchError
from ..stats import percentile
from .net import HOST_ADDR, Link

PROBE = Path(__file__).with_name("probe_program.py")
PORT = 5201  # the namespaces are fresh: nothing else listens there


@dataclass
class Quality:
    rtt_p50_ms: float
    rtt_min_ms: float
    pings: int
    lost: int
    down_mbit: float
    up_mbit: float
    bridge: dict[str, dict[str, int]]

    def describe(self) -> str:
        late = max(way["max_late_us"] for way in self.bridge.values()) / 1e3
        return (
            f"UDP ping p50 {self.rtt_p50_ms:.1f} ms (min {self.rtt_min_ms:.1f}, "
            f"{self.lost}/{self.pings} lost); TCP {self.down_mbit:.1f} Mbit/s down, "
            f"{self.up_mbit:.1f} up; bridge sent a frame at most {late:.1f} ms late"
        )


def _run(link: Link, args: list[str], timeout: float) -> dict:
    argv = [*link.exec("joiner"), sys.executable, str(PROBE), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"link probe {args[0]} failed: {done.stderr[-300:]}")
    result: dict = json.loads(done.stdout)
    return result


def measure(link: Link, pings: int, bulk_seconds: float) -> Quality:
    server = subprocess.Popen(
        [*link.exec("host"), sys.executable, str(PROBE), "serve", HOST_ADDR, str(PORT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise BenchError("the link probe's server did not start")
        ping = _run(link, ["ping", HOST_ADDR, str(PORT), str(pings)], 5 + pings * 3)
        rates = {}
        for way in ("down", "up"):
            r = _run(link, ["bulk", HOST_ADDR, str(PORT), way, str(bulk_seconds)], 60)
            rates[way] = r["bytes"] * 8 / max(r["seconds"], 1e-9) / 1e6
    finally:
        stop_process(server)
        if server.stdout is not None:
            server.stdout.close()
    rtts = ping["rtt_ms"] or [float("nan")]
    return Quality(
        percentile(rtts, 50),
        min(rtts),
        pings,
        ping["lost"],
        rates["down"],
        rates["up"],
        link.bridge_stats(),
    )
