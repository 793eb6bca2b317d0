"""`beach serve` as a plain subprocess for tests that talk to it directly (fuzzing, load): its
stderr drained by a thread into a list of lines, since a PTY would block the server once
nobody reads it."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import threading
from pathlib import Path

from conftest import BEACH, beach_env

RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


class ServeProcess:
    """`beach serve` with its stderr drained by a thread into a list of lines (a PTY would
    block the server once nobody reads it)."""

    def __init__(self, *args: str, nofile: int | None = None) -> None:
        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [BEACH, "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=beach_env(),
            preexec_fn=limit,
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._listening.wait(20):
            self.stop()
            raise AssertionError(f"beach serve did not start:\n{self.stderr()}")
        match = re.search(r"listening on (ws://\S+)", self.stderr())
        assert match, self.stderr()
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.lines.append(line)
            if "listening on" in line:
                self._listening.set()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def mark(self) -> int:
        return len(self.lines)

    def stderr(self, since: int = 0) -> str:
        return "\n".join(self.lines[since:])

    def records(self, since: int = 0) -> list[str]:
        """Log records (a timestamped line and its continuation lines) since `mark`."""
        out: list[list[str]] = []
        for line in self.lines[since:]:
            if RECORD_START.match(line) or not out:
                out.append([line])
            else:
                out[-1].append(line)
        return ["\n".join(r) for r in out]

    def problems(self) -> str:
        """Warnings, errors and tracebacks it logged (for failure messages)."""
        return "\n".join(line for line in self.lines if re.search(r"WARN|ERROR|Traceback", line))

    def tracebacks(self, since: int = 0) -> list[str]:
        """The log records with a traceback in them, since `mark`."""
        return [r for r in self.records(since) if "Traceback (most recent call last)" in r]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) if match else 0

    def stop(self, timeout: float = 5.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; True if SIGTERM was enough."""
        clean = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                clean = False
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        return clean
