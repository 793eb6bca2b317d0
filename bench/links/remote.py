"""The programs compared across a shaped link, each started the way a user would: `ssh -tt`,
`ssh -C` and mosh from the joiner's side to an sshd on the host's side, and `beach host` (with
its embedded server, so signaling crosses the link too) and `beach join`."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from pathlib import Path

from ..env import COLS, ROWS, beach_bin, proc_env, stop_process
from ..errors import BenchError
from ..ptys import PtyProcess
from ..ssh import SshServer, find_sshd
from .net import HOST_ADDR, Link

START_TIMEOUT = 30.0
SERVER_PORT = 7777  # beach's embedded server, on the host's side of the link
CLIENTS = ("ssh -tt", "ssh -C", "mosh")


class LinkSshd:
    """The benchmark's private sshd (same keys and config), run again inside the host's
    namespace and listening on its link address too."""

    def __init__(self, ssh: SshServer, link: Link) -> None:
        sshd = find_sshd()
        if sshd is None:
            raise BenchError("sshd is not installed")
        self.ssh = ssh
        self.log_path = ssh.dir / f"sshd-{link.host}.log"
        self._log = open(self.log_path, "wb")
        config = ssh.dir / "sshd_config"
        self.proc = subprocess.Popen(
            [
                *link.exec("host"),
                sshd,
                "-D",
                "-e",
                "-f",
                str(config),
                "-o",
                f"ListenAddress={HOST_ADDR}",
                "-o",
                f"PidFile={ssh.dir / (link.host + '.pid')}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            self._wait_listening(link)
        except BaseException:
            self.close()
            raise

    def _wait_listening(self, link: Link) -> None:
        probe = f"import socket; socket.create_connection(('{HOST_ADDR}', {self.ssh.port}), 1)"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            done = subprocess.run(
                [*link.exec("host"), "python3", "-c", probe], capture_output=True, timeout=10
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise BenchError(f"sshd in the host namespace did not start: {self.log_path.read_text()}")

    def ssh_options(self) -> list[str]:
        return self.ssh.options()

    def client_argv(self, client: str, command: list[str]) -> list[str]:
        """The joiner-side argv of one of CLIENTS running `command` on the host's side."""
        target = f"{self.ssh.user}@{HOST_ADDR}"
        if client == "mosh":
            # --predict=never: the figure is the real echo, not mosh's local guess at it.
            ssh = shlex.join(["ssh", *self.ssh_options()])
            return ["mosh", "--predict=never", f"--ssh={ssh}", target, "--", *command]
        compress = ["-C"] if client == "ssh -C" else []
        return ["ssh", "-tt", *compress, *self.ssh_options(), target, shlex.join(command)]

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


def client(link: Link, sshd: LinkSshd, name: str, command: list[str]) -> PtyProcess:
    argv = [*link.exec("joiner"), *sshd.client_argv(name, command)]
    return PtyProcess(argv, proc_env(), COLS, ROWS, name=name.replace(" ", ""))


class LinkHost:
    """`beach host` on the host's side of the link with its embedded server; joiners run
    `beach join` on the joiner's side."""

    def __init__(self, link: Link, workdir: Path, command: list[str], serial: int) -> None:
        self.link = link
        self.info_path = workdir / f"linkhost-{link.host}-{serial}.json"
        with contextlib.suppress(FileNotFoundError):
            self.info_path.unlink()
        argv = [
            *link.exec("host"),
            beach_bin(),
            "host",
            "--bind",
            HOST_ADDR,
            "--port",
            str(SERVER_PORT),
            "--info-file",
            str(self.info_path),
            "--",
            *command,
        ]
        self.pty = PtyProcess(argv, proc_env(), COLS, ROWS, name=f"linkhost{serial}")
        self.tap = self.pty.tap()
        self.joiners: list[PtyProcess] = []
        try:
            info = self._wait_info()
        except BaseException:
            self.close()
            raise
        # --quiet: no line saying how it connected (a keystroke's glyph could be found in it).
        self.join_argv = [*link.exec("joiner"), beach_bin(), *info["join_command"][1:], "--quiet"]

    def _wait_info(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.pty.alive():
            if self.info_path.exists():
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(self.info_path.read_text())
            time.sleep(0.02)
        raise BenchError(f"beach host wrote no info file; its screen: {self.tap.tail[-400:]!r}")

    @property
    def pid(self) -> int:
        return self.pty.pid

    def join(self) -> PtyProcess:
        n = len(self.joiners) + 1
        joiner = PtyProcess(self.join_argv, proc_env(), COLS, ROWS, name=f"{self.pty.name}-j{n}")
        self.joiners.append(joiner)
        return joiner

    def close(self) -> None:
        for joiner in self.joiners:
            with contextlib.suppress(Exception):
                if joiner.alive():
                    joiner.write(b"\x1dd")  # Ctrl-] d: leave the way a person does
                    joiner.wait(2.0)
            joiner.close()
        self.pty.close()
