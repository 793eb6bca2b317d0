"""The beach processes under test: `beach serve`, `beach host` and `beach join`, each started
the way a user would start them, the host and joiners in their own pseudo-terminals."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from pathlib import Path

from .env import COLS, PROMPT, ROWS, beach_bin, proc_env, stop_process
from .errors import BenchError
from .ptys import PtyProcess

START_TIMEOUT = 30.0
_serial = itertools.count(1)


def read_rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int) -> float:
    """Time the process's main thread spent runnable but waiting for a CPU (run-queue delay),
    from /proc/<pid>/schedstat: how much the machine's other processes held it back."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


# The benchmark's server lifts the abuse limits that would otherwise refuse its own load: one
# address hosting 10,000 sessions, 1000 relay messages a second on one connection, hundreds of
# joins a minute. Only flags this version of `beach serve` has are passed.
SERVER_LIMITS = {
    "--join-rate": "100000",
    "--max-peers": "1000",
    "--max-sessions-per-address": "100000",
    "--host-rate": "100000",
    "--max-message-rate": "100000",
    "--max-connections": "100000",
    "--max-connections-per-address": "100000",
    "--max-pending-per-address": "100000",
}
_serve_flags: set[str] | None = None


def serve_flags() -> set[str]:
    """The long options `beach serve --help` lists."""
    global _serve_flags
    if _serve_flags is None:
        done = subprocess.run(
            [beach_bin(), "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            env=proc_env(),
            check=True,
        )
        _serve_flags = set(re.findall(r"(--[a-z][a-z-]*)", done.stdout))
    return _serve_flags


class BeachServer:
    """`beach serve` on a free loopback port, logging to a file (never to a pipe that could
    fill up and stall it)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = workdir / f"serve-{next(_serial)}.log"
        known = serve_flags()
        self.limits = {flag: value for flag, value in SERVER_LIMITS.items() if flag in known}
        self._log = open(self.log_path, "wb")
        argv = [beach_bin(), "serve", "--host", "127.0.0.1", "--port", "0"]
        for flag, value in self.limits.items():
            argv += [flag, value]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=proc_env(**(env or {})),
            start_new_session=True,
        )
        try:
            self.url = self._wait_url()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = re.search(r"listening on (ws://\S+)", self.log_path.read_text(errors="replace"))
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise BenchError(f"beach serve did not start: {self.log_path.read_text()[-500:]!r}")

    def rss_kib(self) -> int:
        return read_rss_kib(self.proc.pid)

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


class BeachJoiner:
    """`beach join` in its own terminal."""

    def __init__(self, argv: list[str], name: str, log_file: Path | None = None) -> None:
        if log_file is not None:  # global options go before the subcommand
            argv = [argv[0], "--log-file", str(log_file), "--log-level", "debug", *argv[1:]]
        self.pty = PtyProcess(argv, proc_env(), COLS, ROWS, name=name)

    @property
    def started(self) -> float:
        return self.pty.started

    def detach(self, timeout: float = 10.0) -> None:
        """Ctrl-] d, the way a person leaves; killed if it does not go."""
        try:
            if self.pty.alive():
                self.pty.write(b"\x1dd")
                self.pty.wait(timeout)
        finally:
            self.pty.close()

    def close(self) -> None:
        self.pty.close()


class BeachHost:
    """`beach host` sharing `command` through `server`. Its own terminal is drained by a tap,
    as a person's terminal would display it."""

    def __init__(
        self,
        server: BeachServer,
        workdir: Path,
        command: list[str],
        env: dict[str, str] | None = None,
    ) -> None:
        n = next(_serial)
        self.info_path = workdir / f"host-{n}.json"
        argv = [beach_bin(), "host", "--server", server.url, "--info-file", str(self.info_path)]
        self.pty = PtyProcess(
            [*argv, "--", *command], proc_env(**(env or {})), COLS, ROWS, name=f"host{n}"
        )
        self.tap = self.pty.tap()
        self.joiners: list[BeachJoiner] = []
        try:
            self.info = self._wait_info()
        except BaseException:
            self.close()
            raise
        # --quiet: no line of beach's own saying how it connected (a keystroke's glyph could
        # be found in it).
        self.join_argv = [beach_bin(), *self.info["join_command"][1:], "--quiet"]

    @property
    def pid(self) -> int:
        return self.pty.pid

    def _wait_info(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.info_path.exists():
                info = json.loads(self.info_path.read_text())
                if info.get("join_command", [""])[0] != "beach":
                    raise BenchError(f"unexpected join_command in {self.info_path}: {info}")
                return info
            if not self.pty.alive():
                break
            time.sleep(0.01)
        raise BenchError(f"beach host wrote no info file; its screen: {self.tap.tail[-500:]!r}")

    def wait_prompt(self, timeout: float = START_TIMEOUT) -> None:
        self.tap.wait(self.tap.expect(PROMPT.encode(), seen_ok=True), timeout)

    def type(self, text: str) -> None:
        """Keystrokes at the host's own keyboard."""
        self.pty.write(text.encode())

    def join(self, log_file: Path | None = None, server: str | None = None) -> BeachJoiner:
        """`beach join` with the printed command (`server` replaces its --server value)."""
        argv = list(self.join_argv)
        if server is not None:
            argv[argv.index("--server") + 1] = server
        joiner = BeachJoiner(argv, f"{self.pty.name}-joiner{len(self.joiners) + 1}", log_file)
        self.joiners.append(joiner)
        return joiner

    def close(self) -> None:
        try:
            for joiner in self.joiners:
                joiner.close()
        finally:
            self.pty.close()
