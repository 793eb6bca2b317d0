"""The ssh baseline: a private OpenSSH sshd on a loopback port, with a throwaway host key and
user key in the run's temporary directory, and `ssh -tt` argv to reach it."""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .env import stop_process
from .errors import BenchError

NOT_AVAILABLE = "ssh: not available"
START_TIMEOUT = 15.0


def find_sshd() -> str | None:
    """sshd is usually in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("sshd")
    if found:
        return found
    for candidate in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "beach-bench", "-f", str(path)],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


class SshServer:
    def __init__(self, sshd: str, workdir: Path) -> None:
        self.dir = workdir / "ssh"
        self.dir.mkdir()
        self.user = getpass.getuser()
        host_key, self.user_key = self.dir / "host_key", self.dir / "user_key"
        _keygen(host_key)
        _keygen(self.user_key)
        authorized = self.dir / "authorized_keys"
        authorized.write_bytes(Path(f"{self.user_key}.pub").read_bytes())
        authorized.chmod(0o600)
        self.port = _free_port()
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "UseDNS no",
                    "LogLevel ERROR",
                    # An empty home: the user's shell start-up files (root's may run pyenv,
                    # which can wait a minute on a lock) are not what is measured.
                    f"SetEnv HOME={home}",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:  # root's sshd insists on its privilege separation directory
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.log_path = self.dir / "sshd.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.close()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0),
            ):
                return
            time.sleep(0.05)
        raise BenchError(f"sshd did not start: {self.log_path.read_text()[-500:]!r}")

    def options(self) -> list[str]:
        """ssh's options for the private sshd: its key and port, no escape character, no config,
        no host-key questions."""
        return [
            "-e",
            "none",
            "-F",
            "/dev/null",
            "-i",
            str(self.user_key),
            "-p",
            str(self.port),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]

    def argv(self, command: list[str]) -> list[str]:
        """`ssh -tt` running `command` on the private sshd."""
        return ["ssh", "-tt", *self.options(), f"{self.user}@127.0.0.1", shlex.join(command)]

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


def start_sshd(workdir: Path) -> SshServer | None:
    """The private sshd, or None when sshd is not installed."""
    sshd = find_sshd()
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return None
    return SshServer(sshd, workdir)
