"""One shaped link: namespaces "host" and "joiner" on one Ethernet segment that runs through a
middle namespace, where the delay bridge (bridge_program.py) carries every frame across and a
tbf qdisc on each of its two interfaces limits the rate of what it sends on.

    host ns: eh 10.77.0.1 ── mh [middle ns: bridge, tbf on mh and mj] mj ── ej 10.77.0.2: joiner ns

Everything is created with names unique to this link and removed by close(), which the
context manager calls also on Ctrl-C or an exception; an atexit hook catches the rest.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import BenchError
from .profiles import Profile

HOST_ADDR, JOIN_ADDR = "10.77.0.1", "10.77.0.2"
TOOLS = ("ip", "tc", "ethtool")
BRIDGE = Path(__file__).with_name("bridge_program.py")
START_TIMEOUT = 10.0
MTU_FRAME = 1514


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


DELAY_LINE = 8 << 20  # bytes the bridge holds per direction at most (its frames in flight)


def queue_bytes(profile: Profile) -> int:
    """The shaper's buffer, as a router's: one bandwidth-delay product, at least 64 KiB."""
    return max(int(profile.rate_bytes * profile.rtt_ms / 1e3), 64 << 10)


class Link:
    def __init__(self, profile: Profile, seed: int = 1) -> None:
        self.profile = profile
        tag = uuid.uuid4().hex[:6]
        self.host, self.middle, self.joiner = (f"bl{r}-{tag}" for r in ("h", "m", "j"))
        self.eh, self.mh, self.mj, self.ej = (f"{n}{tag}" for n in ("eh", "mh", "mj", "ej"))
        self._made: list[str] = []
        self.bridge: subprocess.Popen[str] | None = None
        atexit.register(self.close)
        try:
            self._build(seed)
        except BaseException:
            self.close()
            raise

    def _build(self, seed: int) -> None:
        for ns in (self.host, self.middle, self.joiner):
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for side, end, mid, addr in (
            (self.host, self.eh, self.mh, HOST_ADDR),
            (self.joiner, self.ej, self.mj, JOIN_ADDR),
        ):
            sh(
                "ip",
                "link",
                "add",
                end,
                "netns",
                side,
                "type",
                "veth",
                "peer",
                "name",
                mid,
                "netns",
                self.middle,
            )
            sh("ip", "-n", side, "addr", "add", f"{addr}/24", "dev", end)
            # IPv6 off: no router solicitations or link-local candidates on the wire.
            sh("ip", "netns", "exec", side, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            # The bridge copies frames as they are: offloaded checksums would arrive unfilled,
            # and segmentation offload would hand it frames larger than the MTU.
            for ns, dev in ((side, end), (self.middle, mid)):
                sh(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "ethtool",
                    "-K",
                    dev,
                    "tx",
                    "off",
                    "tso",
                    "off",
                    "gso",
                    "off",
                    "gro",
                    "off",
                )
                sh("ip", "-n", ns, "link", "set", dev, "up")
            if self.profile.mbit > 0:  # 0: the bridge alone, to see what it tops out at
                sh(*self._tbf(mid))
        self._start_bridge(seed)

    def _tbf(self, dev: str) -> list[str]:
        """The rate limit on what the bridge sends out `dev` (towards the far side)."""
        p = self.profile
        burst = max(int(p.rate_bytes / 200), 2 * MTU_FRAME)  # 5 ms worth
        return [
            "ip",
            "netns",
            "exec",
            self.middle,
            "tc",
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            f"{p.mbit:g}mbit",
            "burst",
            str(burst),
            "limit",
            str(queue_bytes(p)),
        ]

    def _start_bridge(self, seed: int) -> None:
        p = self.profile
        self.bridge = subprocess.Popen(
            [
                *self.exec("middle"),
                sys.executable,
                str(BRIDGE),
                self.mh,
                self.mj,
                f"{p.delay_ms:g}",
                f"{p.loss:g}",
                str(seed),
                str(DELAY_LINE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.bridge.stdout is not None
        line = self._line(START_TIMEOUT)
        if line != "ready":
            raise BenchError(f"the delay bridge did not start ({line!r})")

    def _line(self, timeout: float) -> str:
        assert self.bridge is not None and self.bridge.stdout is not None
        ready, _, _ = select.select([self.bridge.stdout], [], [], timeout)
        if not ready:
            raise BenchError("the delay bridge did not answer")
        return self.bridge.stdout.readline().strip()

    def exec(self, side: str) -> list[str]:
        """The prefix that runs a command in the "host", "joiner" or "middle" namespace."""
        ns = {"host": self.host, "joiner": self.joiner, "middle": self.middle}[side]
        return ["ip", "netns", "exec", ns]

    def bridge_stats(self) -> dict[str, dict[str, int]]:
        """The bridge's counters, keyed "down" (host to joiner) and "up" (joiner to host)."""
        assert self.bridge is not None and self.bridge.stdin is not None
        if self.bridge.poll() is not None:
            raise BenchError(f"the delay bridge exited ({self.bridge.returncode})")
        self.bridge.stdin.write("stats\n")
        self.bridge.stdin.flush()
        raw = json.loads(self._line(5.0))
        return {"down": raw[f"{self.mh}>{self.mj}"], "up": raw[f"{self.mj}>{self.mh}"]}

    def wire_bytes(self) -> tuple[int, int]:
        """Bytes (Ethernet frames) that arrived at the joiner and at the host so far."""
        return self._rx(self.joiner, self.ej), self._rx(self.host, self.eh)

    @staticmethod
    def _rx(ns: str, dev: str) -> int:
        info = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", dev))
        return int(info[0]["stats64"]["rx"]["bytes"])

    def close(self) -> None:
        atexit.unregister(self.close)
        if self.bridge is not None:
            with contextlib.suppress(OSError):
                assert self.bridge.stdin is not None
                self.bridge.stdin.close()
            try:
                self.bridge.wait(3.0)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait(3.0)
            if self.bridge.stdout is not None:
                self.bridge.stdout.close()
            self.bridge = None
        for ns in reversed(self._made):  # deleting a namespace deletes its veth ends too
            kill_namespace(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)
        self._made.clear()


def kill_namespace(ns: str) -> None:
    """Stop any process still running inside `ns` (a leg that timed out), by its pid."""
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=15)
    for pid in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        if not done.stdout.strip():
            return
        time.sleep(0.05)


@contextlib.contextmanager
def shaped(profile: Profile, seed: int = 1) -> Iterator[Link]:
    link = Link(profile, seed)
    try:
        yield link
    finally:
        link.close()
