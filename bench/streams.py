"""The output streams the throughput figures are measured on, generated once per run."""

from __future__ import annotations

import base64
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BenchError


@dataclass(frozen=True)
class Stream:
    key: str
    label: str
    path: Path
    size: int

    @property
    def mb(self) -> float:
        return self.size / 1e6


def record_ls(path: Path, size: int, timeout: float = 120.0) -> int:
    """`ls -lR /usr` as recorded once, cut at `size` bytes (repeated if /usr lists less)."""
    with subprocess.Popen(
        ["ls", "-lR", "/usr"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    ) as proc:
        assert proc.stdout is not None
        try:
            data = proc.stdout.read(size)
        finally:
            proc.kill()
            proc.wait(timeout)
    if not data:
        raise BenchError("`ls -lR /usr` printed nothing")
    whole = data
    while len(whole) < size:  # a small /usr: play the recording again
        whole += data
    path.write_bytes(whole[:size])
    return size


_TARGETS = ["core", "net", "ui", "storage", "crypto", "util", "render", "proto", "cli", "tests"]
_FLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-fPIC", "-DNDEBUG", "-std=c11", "-pthread"]
_WORDS = ["buffer", "parse", "handle", "state", "queue", "frame", "codec", "index", "cache", "io"]


def _build_line(rng: random.Random, i: int, total: int) -> str:
    pct = 100 * i // total
    mod = rng.choice(_TARGETS)
    src = f"src/{mod}/{rng.choice(_WORDS)}_{rng.choice(_WORDS)}{rng.randrange(40)}.c"
    r = rng.random()
    if r < 0.70:
        return f"[{pct:3d}%] \x1b[32mBuilding C object {mod}/CMakeFiles/{mod}.dir/{src}.o\x1b[0m"
    if r < 0.80:
        flags = " ".join(rng.sample(_FLAGS, 3))
        return f"/usr/bin/cc {flags} -Iinclude -I{mod} -o build/{src}.o -c {src}"
    if r < 0.90:
        line, col = rng.randrange(1, 900), rng.randrange(1, 80)
        return (
            f"\x1b[1m{src}:{line}:{col}:\x1b[0m \x1b[1;35mwarning:\x1b[0m unused variable "
            f"'\x1b[1m{rng.choice(_WORDS)}\x1b[0m' [\x1b[1;35m-Wunused-variable\x1b[0m]"
        )
    if r < 0.93:
        return f"\x1b[1m{src}: \x1b[1;31merror:\x1b[0m implicit declaration of function"
    if r < 0.98:
        return f"[{pct:3d}%] \x1b[1;32mLinking C static library lib{mod}.a\x1b[0m"
    return f"[{pct:3d}%] Built target \x1b[1;34m{mod}\x1b[0m"


def synth_build_log(path: Path, size: int, seed: int = 7) -> int:
    """A coloured, make/CMake-like build log: short lines, many SGR sequences."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    estimate = max(size // 70, 1)
    i = 0
    while total < size:
        line = _build_line(rng, i, estimate) + "\n"
        lines.append(line)
        total += len(line)
        i += 1
    data = "".join(lines).encode()[:size]
    path.write_bytes(data)
    return len(data)


def random_base64(path: Path, size: int) -> int:
    """Random bytes as base64 text (76-column lines): barely compressible, terminal-safe."""
    raw = os.urandom(size * 3 // 4 + 64)
    data = base64.encodebytes(raw)[:size]
    path.write_bytes(data)
    return len(data)


_MAKERS = {"ls": record_ls, "build": synth_build_log, "random": random_base64}
KEYS = ("ls", "build", "random")
LABELS = ("ls -lR /usr", "build log (ANSI colours)", "random (base64)")
REALISTIC = ("ls", "build")  # what people actually print; random is the worst case


def label(key: str) -> str:
    return LABELS[KEYS.index(key)]


def make_streams(workdir: Path, size: int) -> list[Stream]:
    streams = []
    for key, label, make in zip(KEYS, LABELS, _MAKERS.values(), strict=True):
        path = workdir / f"stream-{key}.txt"
        streams.append(Stream(key, label, path, make(path, size)))
    return streams
