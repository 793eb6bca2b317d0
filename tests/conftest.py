"""End-to-end harness: real `beach` processes in real pseudo-terminals (pexpect).

BEACH_TEST_DUMP=DIR keeps every process's transcript in DIR when a test ends."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

BIN = Path(sys.executable).parent
BEACH = str(BIN / "beach")
TIMEOUT = 20  # seconds for any single expectation
# `beach serve` keeps its ticket key under $XDG_STATE_HOME: one directory of this test run's,
# never the home directory of whoever runs the tests.
STATE_HOME = tempfile.mkdtemp(prefix="beach-test-state-")


def beach_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACH_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TERM"] = "xterm-256color"
    env["PS1"] = "$ "
    env["LANG"] = "C.UTF-8"
    env["BEACH_CONFIG"] = "/nonexistent/beach-test-config.toml"
    env["XDG_STATE_HOME"] = STATE_HOME
    env.pop("STATE_DIRECTORY", None)
    env.update(extra)
    return env


class Proc:
    """A process in its own PTY; `expect` reads everything it prints. Output is read only while
    a test expects, so a chatty process (a server that logs every message) must log to a file:
    once its terminal's buffer fills, its writes block."""

    def __init__(
        self,
        argv: list[str],
        *,
        cols: int = 100,
        rows: int = 30,
        maxread: int = 2000,
        searchwindowsize: int | None = None,
        **env: str,
    ) -> None:
        self.argv = argv
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            env=beach_env(**env),
            dimensions=(rows, cols),
            timeout=TIMEOUT,
            maxread=maxread,
            searchwindowsize=searchwindowsize,
            encoding="utf-8",
            codec_errors="replace",
        )
        self.transcript = io.StringIO()  # everything the process wrote to its terminal
        self.child.logfile_read = self.transcript

    def expect(self, pattern: str | list, timeout: float = TIMEOUT) -> int:
        return self.child.expect(pattern, timeout=timeout)

    def send(self, text: str) -> None:
        self.child.send(text)

    def read_for(self, seconds: float, until: str | None = None) -> bool:
        """Read whatever the process prints for up to `seconds` (into the transcript, and kept
        for the next `expect`); True if `until` showed up, which ends the read early."""
        patterns: list = [pexpect.TIMEOUT, pexpect.EOF, *([until] if until else [])]
        return self.child.expect(patterns, timeout=seconds) == 2

    def exit_code(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to end and return a shell-style exit code."""
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        if self.child.signalstatus is not None:
            return 128 + self.child.signalstatus
        return self.child.exitstatus

    @property
    def output(self) -> str:
        """What was read since the last match (for failure messages; `transcript` has it all)."""
        return (self.child.before or "") if isinstance(self.child.before, str) else ""

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


class Procs:
    def __init__(self) -> None:
        self.all: list[Proc] = []

    def start(self, argv: list[str], **kw: object) -> Proc:
        p = Proc(argv, **kw)  # type: ignore[arg-type]
        self.all.append(p)
        return p

    def close(self) -> None:
        dump = os.environ.get("BEACH_TEST_DUMP")  # a directory: keep every transcript there
        for i, p in enumerate(self.all):
            p.kill()
            if dump:
                os.makedirs(dump, exist_ok=True)
                prog = next(
                    (a for a in p.argv if a not in ("ip", "netns", "exec") and "bch-" not in a), "p"
                )
                name = f"{i}-{os.path.basename(prog)}.log"
                with open(os.path.join(dump, name), "w") as f:
                    f.write(" ".join(p.argv) + "\n" + p.transcript.getvalue())


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.close()


@pytest.fixture
def server(procs: Procs) -> str:
    """A `beach serve` on a free loopback port; returns its URL."""
    p = procs.start([BEACH, "serve", "--host", "127.0.0.1", "--port", "0"])
    p.expect(r"listening on (ws://\S+)")
    return p.child.match.group(1)


SHELL = ["bash", "--norc", "--noprofile", "-i"]


def start_host(
    procs: Procs,
    tmp_path: Path,
    server: str | None,
    *extra: str,
    command: list[str] | None = None,
    global_opts: tuple[str, ...] = (),
    wrap: list[str] | None = None,
    **kw: object,
) -> tuple[Proc, dict]:
    """Start `beach host` and return it with the JSON of its --info-file."""
    info = tmp_path / f"info-{len(procs.all)}.json"
    argv = [*(wrap or []), BEACH, *global_opts, "host", "--info-file", str(info)]
    if server:
        argv += ["--server", server]
    argv += [*extra, "--", *(command or SHELL)]
    host = procs.start(argv, **kw)
    # The banner is printed after the info file is written.
    host.expect("to join")
    data = json.loads(info.read_text())
    data["_path"] = str(info)
    return host, data


def start_join(procs: Procs, info: dict, key: str = "join_command", **kw: object) -> Proc:
    cmd = list(info[key])
    assert cmd[0] == "beach"
    joiner = procs.start([BEACH, *cmd[1:]], **kw)
    return joiner


def shell_ready(p: Proc) -> None:
    """Wait for the shared shell's prompt."""
    p.expect(r"\$ ")


def strip_ansi(text: str) -> str:
    return re.sub(
        r"\x1b\[[0-9;?!]*[a-zA-Z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>c]", "", text
    )


def need(program: str) -> str:
    """A system program a test needs: under CI it must be there (the test fails, never skips)."""
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is required in CI (.ci/run installs it)")
        pytest.skip(f"{program} not installed")
    return path


def wait_for_line(path: Path, text: str, timeout: float = TIMEOUT) -> None:
    """Wait until the file at `path` (a log) holds `text`: for programs whose terminal says
    nothing of the event, or say it only to a log."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never said {text!r}")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Fixtures that start processes or namespaces, and the marker a test using one must carry: the
# fast tier (-m "not e2e and not netns and not load") stays unit tests only, even for a test
# added later and not marked.
NEEDS_MARKER = {
    "procs": "e2e",
    "server": "e2e",
    "serves": "e2e",
    "serve": "e2e",
    "batch": "e2e",
    "arena": "e2e",
    "small_serve": "e2e",
    "tight_serve": "e2e",
    "nginx_front": "e2e",
    "net": "netns",
    "loopback_only_netns": "netns",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        f"{item.nodeid} (uses {fixture}: mark it {marker})"
        for item in items
        for fixture in getattr(item, "fixturenames", ())
        if (marker := NEEDS_MARKER.get(fixture)) and item.get_closest_marker(marker) is None
    ]
    if unmarked:
        raise pytest.UsageError("tests missing their tier marker:\n  " + "\n  ".join(unmarked))
