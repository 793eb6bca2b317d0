"""What every section of a run shares: options, a temporary directory, the generated streams,
the private sshd and the machine description; everything started here is stopped in close()."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .noise import NoiseMeter
from .ssh import SshServer, start_sshd
from .streams import Stream, make_streams


@dataclass(frozen=True)
class Options:
    keystrokes: int = 1000
    warmup: int = 20
    rounds: int = 2  # latency: fresh processes per round, methods interleaved
    reps: int = 3  # throughput and host cost: runs per figure (median)
    stream_bytes: int = 20_000_000
    joins: int = 7
    fanout_joiners: int = 10
    sessions: int = 10_000
    relay_rate: int = 1000
    relay_seconds: float = 5.0
    timeout: float = 120.0  # any single wait for a stream or an echo round
    links_profiles: tuple[str, ...] = ("LAN", "broadband", "mobile")  # real links: measured

    @classmethod
    def quick(cls) -> Options:
        return cls(
            keystrokes=60,
            warmup=5,
            rounds=1,
            reps=1,
            stream_bytes=400_000,
            joins=2,
            fanout_joiners=3,
            sessions=200,
            relay_rate=1000,
            relay_seconds=1.0,
            timeout=60.0,
            links_profiles=("broadband",),
        )


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        aiortc = metadata.version("aiortc")
    except metadata.PackageNotFoundError:
        aiortc = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "python": platform.python_version(),
        "aiortc": aiortc,
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "beach": beach_revision(),
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


REPO_ROOT = Path(__file__).resolve().parent.parent


def beach_revision() -> str:
    """The checkout being measured: commit, and whether the tree has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "beach_cli"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + local changes in beach_cli/" if dirty else head


class Context:
    def __init__(self, options: Options, require_ssh: bool = False) -> None:
        self.options = options
        self.repo_root = REPO_ROOT
        self.require_ssh = require_ssh
        self._tmp = tempfile.TemporaryDirectory(prefix="beach-bench-")
        self.workdir = Path(self._tmp.name)
        self._streams: list[Stream] | None = None
        self._ssh: SshServer | None = None
        self._ssh_checked = False
        self.noise = NoiseMeter(self.workdir)

    @property
    def streams(self) -> list[Stream]:
        if self._streams is None:
            self._streams = make_streams(self.workdir, self.options.stream_bytes)
        return self._streams

    def stream(self, key: str) -> Stream:
        return next(s for s in self.streams if s.key == key)

    @property
    def ssh(self) -> SshServer | None:
        """The private sshd, started on first use; None if sshd is not installed."""
        if not self._ssh_checked:
            self._ssh_checked = True
            self._ssh = start_sshd(self.workdir)
            if self._ssh is None and self.require_ssh:
                raise RuntimeError("sshd is required (CI=true) but not installed")
        return self._ssh

    def close(self) -> None:
        try:
            self.noise.close()
            if self._ssh is not None:
                self._ssh.close()
        finally:
            self._tmp.cleanup()
