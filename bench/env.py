"""Where things are and the environment every benchmarked process gets."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
PYTHON = sys.executable
PROMPT = "[bench]$ "
SHELL = ["bash", "--norc", "--noprofile", "-i"]
COLS, ROWS = 120, 40


def beach_bin() -> str:
    """The `beach` of this interpreter's environment (the venv), else the one on PATH."""
    here = BIN / "beach"
    if here.exists():
        return str(here)
    found = shutil.which("beach")
    if found is None:
        raise FileNotFoundError("no `beach` executable next to this Python or on PATH")
    return found


def proc_env(**extra: str) -> dict[str, str]:
    """A clean environment: no BEACH_* settings or config file, a known prompt and TERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACH_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TERM"] = "xterm-256color"
    env["PS1"] = PROMPT
    env["LANG"] = "C.UTF-8"
    env.pop("LC_ALL", None)
    env["BEACH_CONFIG"] = "/nonexistent/beach-bench-config.toml"
    env.pop("PROMPT_COMMAND", None)
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 5 s each."""
    for stop in (proc.terminate, proc.kill):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)
