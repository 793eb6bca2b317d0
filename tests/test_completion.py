"""Shell completion from click's own support (`beach completion bash|zsh|fish`), tried as a
person would: in a real interactive bash inside tmux, pressing Tab, reading the screen."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BEACH, TIMEOUT, need

pytestmark = pytest.mark.e2e


class Tmux:
    """One tmux session of its own (its own server socket), running an interactive bash."""

    def __init__(self, tmp_path: Path, cols: int = 120, rows: int = 30) -> None:
        self.tmux = need("tmux")
        self.sock = str(tmp_path / f"tmux-{uuid.uuid4().hex[:8]}")
        env = {**os.environ, "PATH": f"{Path(BEACH).parent}:{os.environ['PATH']}", "PS1": "$ "}
        size = ("-x", str(cols), "-y", str(rows))
        self._run("new-session", "-d", *size, "bash --norc --noprofile", env=env)

    def _run(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [self.tmux, "-S", self.sock, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=True,
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        self._run("send-keys", *keys)

    def screen(self, escapes: bool = False, start: int = 0) -> str:
        """What the pane shows from row `start`; with `escapes`, its colours and attributes
        too (as changes from one cell to the next, from default attributes at `start`)."""
        return self._run("capture-pane", "-p", "-S", str(start), *(("-e",) if escapes else ()))

    def resize(self, cols: int, rows: int) -> None:
        """The window changes size, as a person dragging it would do (the program gets SIGWINCH)."""
        self._run("resize-window", "-x", str(cols), "-y", str(rows))

    def record(self, path: Path) -> None:
        """From now on, every byte the pane's program writes is appended to `path`."""
        self._run("pipe-pane", "-o", f"cat >> {path}")

    def shows(self, text: str) -> str:
        """Wait until the screen holds `text` (bounded); the screen."""
        deadline = time.monotonic() + TIMEOUT
        while text not in (screen := self.screen()):
            assert time.monotonic() < deadline, f"never showed {text!r}:\n{screen}"
            time.sleep(0.05)
        return screen

    def close(self) -> None:
        subprocess.run([self.tmux, "-S", self.sock, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path)
    yield t
    t.close()


def test_tab_completes_commands_options_and_choices_in_bash(tmux: Tmux) -> None:
    tmux.keys("PS1='$ '; eval \"$(beach completion bash)\"; echo loaded-$((1+1))", "Enter")
    tmux.shows("loaded-2")
    tmux.keys("beach jo", "Tab")
    tmux.shows("$ beach join\n")
    tmux.keys("C-u", "beach host --github-u", "Tab")
    tmux.shows("$ beach host --github-user\n")
    tmux.keys("C-u", "beach host --on-guess-limit ", "Tab", "Tab")
    screen = tmux.shows("new-token")
    assert "stop" in screen
    tmux.keys("C-u", "beach completion f", "Tab")
    tmux.shows("$ beach completion fish\n")


@pytest.mark.parametrize(
    ("shell", "marker"), [("zsh", "compdef"), ("fish", "complete --no-files --command beach")]
)
def test_zsh_and_fish_scripts_are_click_s(shell: str, marker: str) -> None:
    done = subprocess.run(
        [BEACH, "completion", shell], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0 and marker in done.stdout and "_BEACH_COMPLETE" in done.stdout


def test_an_unknown_shell_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [BEACH, "completion", "tcsh"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 2 and "'tcsh' is not one of" in done.stderr
