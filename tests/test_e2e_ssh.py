"""`beach ssh`: a real OpenSSH sshd in a network namespace of its own ("there"), and a real
`beach ssh` in a pseudo-terminal in another ("here"), the two joined by a veth pair. The
remote is this very machine, so the remote's `beach` is this repo's: sshd's `SetEnv` puts the
venv's bin directory first on the PATH of every session it starts (no file of the user's is
touched), and a HOME of the test's own, empty: the login shell reads no start-up file of the
user's (which could change the PATH, print, or take its time). `SetEnv` also gives the remote a
TMPDIR of the test's own, where the remote script makes its directory: a test can see it
removed, and find any process left behind by the paths in its arguments."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import BEACH, BIN, TIMEOUT, Proc, Procs, need, wait_for_line
from netns import Net, network

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

HERE_ADDR, THERE_ADDR = "10.77.0.1", "10.77.0.2"
SSH_PORT = 2222
# One ssh attempt, one session: how long `beach ssh` may take to show the remote's shell.
SESSION_TIMEOUT = 40


def find_sshd() -> str:
    """sshd lives in /usr/sbin, not always on PATH; under CI a missing one fails the test."""
    found = shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sshd is required in CI (.ci/run installs openssh-server)")
        pytest.skip("sshd not installed (Debian: openssh-server)")
    return found


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass
class Remote:
    """The remote machine: its sshd's files, and what a `beach ssh` needs to reach it."""

    net: Net
    here: str
    there: str
    dir: Path
    key: Path  # authorized (with no forced command)
    tmp: Path  # the remote sessions' TMPDIR
    local_tmp: Path  # `beach ssh`'s own TMPDIR, here
    sshd: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "sshd.log"

    def start_sshd(self, path: str, authorized: list[str]) -> None:
        """sshd on THERE_ADDR:SSH_PORT, its sessions' PATH `path`, these authorized_keys."""
        (self.dir / "authorized_keys").write_text("".join(line + "\n" for line in authorized))
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        env = [f"PATH={path}", f"HOME={home}", f"TMPDIR={self.tmp}"]
        env.append("BEACH_CONFIG=/nonexistent/beach.toml")
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {SSH_PORT}",
                    f"ListenAddress {THERE_ADDR}",
                    f"HostKey {self.dir / 'host_key'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "StrictModes no",  # the test's files are not in a home directory
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PrintMotd no",
                    "UseDNS no",
                    "AcceptEnv BEACH_SSH_SEEN",
                    "SetEnv " + " ".join(env),
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation (root)
        with open(self.log, "ab") as log:
            self.sshd = subprocess.Popen(
                [*Net.exec(self.there), find_sshd(), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_for_line(self.log, "Server listening on")

    def args(self, *extra: str, key: Path | None = None) -> list[str]:
        """`beach ssh` to the remote, with ssh's -p, -i and -o as a user would give them."""
        return [
            *Net.exec(self.here),
            BEACH,
            "ssh",
            f"root@{THERE_ADDR}",
            "-p",
            str(SSH_PORT),
            "-i",
            str(key or self.key),
            *("-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"),
            *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
            *extra,
        ]

    def start(self, procs: Procs, *extra: str, key: Path | None = None, **env: str) -> Proc:
        return procs.start(self.args(*extra, key=key), TMPDIR=str(self.local_tmp), **env)

    def stop(self) -> None:
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(timeout=10)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    need("ssh")
    need("ssh-keygen")
    find_sshd()
    with network() as net:
        here, there = net.ns("here"), net.ns("there")
        net.link(here, f"{HERE_ADDR}/24", there, f"{THERE_ADDR}/24")
        # `beach ssh`'s TMPDIR is short: it holds a Unix socket (ssh's control socket).
        d, remote_tmp = tmp_path / "ssh", tmp_path / "remote-tmp"
        local_tmp = Path(tempfile.mkdtemp(prefix="beach-test-"))
        for path in (d, remote_tmp):
            path.mkdir()
        keygen(d / "host_key", "beach-test-host")
        key = keygen(d / "user_key", "beach-test-user")
        r = Remote(net, here, there, d, key, remote_tmp, local_tmp)
        try:
            yield r
        finally:
            r.stop()
            shutil.rmtree(local_tmp, ignore_errors=True)


def beach_path() -> str:
    return f"{BIN}:/usr/local/bin:/usr/bin:/bin"


def authorized(key: Path, forced: str | None = None) -> str:
    line = (key.parent / f"{key.name}.pub").read_text().strip()
    return f'command="{forced}" {line}' if forced else line


def lines_of(p: Proc) -> list[str]:
    """What the process wrote, as lines without escape sequences or CRs."""
    text = re.sub(
        r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[78=>]", "", p.transcript.getvalue()
    )
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def beach_lines(p: Proc) -> list[str]:
    return [line for line in lines_of(p) if line.startswith("beach: ")]


def mentioning(text: str, besides: set[int]) -> list[str]:
    """Every process (besides those pids) with `text` in its arguments."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in besides | {os.getpid()}:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found.append(f"{entry.name}: {argv[:200]}")
    return found


def all_gone(remote: Remote, tmp_path: Path, timeout: float = 15.0) -> None:
    """No process of this test left besides sshd (no remote beach host, its shell, no ssh);
    the remote script's directory and `beach ssh`'s control directory removed."""
    besides = {remote.sshd.pid} if remote.sshd else set()
    deadline = time.monotonic() + timeout
    while (left := mentioning(str(tmp_path), besides)) or any(remote.tmp.iterdir()):
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {left} {list(remote.tmp.iterdir())}")
        time.sleep(0.1)
    assert not any(remote.local_tmp.iterdir()), list(remote.local_tmp.iterdir())


# Runs a command, then says its exit status and the terminal's settings before and after: a
# terminal left in raw mode (or with echo off) shows as a difference.
STTY_AROUND = 'stty -g; "$@"; echo "exit=$?"; stty -g'


def start_around(
    remote: Remote, procs: Procs, *extra: str, key: Path | None = None, **kw: object
) -> Proc:
    argv = remote.args(*extra, key=key)
    return procs.start(
        [*argv[:4], "sh", "-c", STTY_AROUND, "sh", *argv[4:]], TMPDIR=str(remote.local_tmp), **kw
    )


def end_around(p: Proc, timeout: float = TIMEOUT) -> int:
    """The exit code of the command started by `start_around`; asserts the terminal's settings
    are as they were."""
    p.expect(r"exit=(\d+)\r\n([0-9a-f:]+)\r\n", timeout=timeout)
    code, after = int(p.child.match.group(1)), p.child.match.group(2)
    before = p.transcript.getvalue().lstrip().split("\r\n", 1)[0]
    assert before == after, f"terminal settings changed: {before} -> {after}"
    assert p.exit_code() == 0
    return code


def test_a_session_on_the_remote_runs_peer_to_peer_and_ends_both_ends(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """Type in the remote's own shell (the login shell: no command given) from here, see its
    output, exit: the remote host is gone, ssh too, exit 0, the terminal as it was."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    p = start_around(remote, procs)
    p.expect("connected, peer-to-peer", timeout=SESSION_TIMEOUT)
    # The shell runs on the remote, in sshd's session: ssh's environment is there.
    p.send("echo remote-$((6*7)) $SSH_CONNECTION\r")
    p.expect(rf"remote-42 {HERE_ADDR} \d+ {THERE_ADDR} {SSH_PORT}")
    p.send("exit\r")
    p.expect("beach: the host's shell exited with status 0")
    assert end_around(p) == 0
    said = beach_lines(p)
    assert said[0] == f"beach: starting `beach host` on root@{THERE_ADDR} over ssh", said
    assert re.fullmatch(rf"beach: joining session \w+ on root@{THERE_ADDR}", said[1]), said
    assert "Traceback" not in p.transcript.getvalue()
    all_gone(remote, tmp_path)
    assert "Accepted publickey for root" in remote.log.read_text()


def test_ssh_options_and_a_command_with_arguments_pass_through(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """-p, -i and -o reach ssh (an -o SetEnv shows up in the remote's environment); the words
    after `--` reach the remote as they were (spaces and quotes included), and its exit
    status comes back."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    script = 'printf "seen:%s [%s]\\n" "$BEACH_SSH_SEEN" "$1"; read x; exit 7'
    p = remote.start(
        procs,
        "-o",
        "SetEnv=BEACH_SSH_SEEN=through-o",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        "two words, 'quoted' $HOME",
    )
    p.expect(r"seen:through-o \[two words, 'quoted' \$HOME\]", timeout=SESSION_TIMEOUT)
    p.send("\r")
    p.expect("beach: the host's shell exited with status 7")
    assert p.exit_code() == 7
    all_gone(remote, tmp_path)


def test_a_config_file_and_a_login_name_pass_through(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """-F names an ssh config whose Host alias has the address, port and key; -l the user."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host the-remote\n  HostName {THERE_ADDR}\n  Port {SSH_PORT}\n"
        f"  IdentityFile {remote.key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
    )
    argv = [*Net.exec(remote.here), BEACH, "ssh", "the-remote", "-F", str(config), "-l", "root"]
    p = procs.start(
        [*argv, "--", "sh", "-c", "echo as-$(id -un); read x"], TMPDIR=str(remote.local_tmp)
    )
    p.expect("as-root", timeout=SESSION_TIMEOUT)
    p.send("\r")
    assert p.exit_code() == 0
    assert beach_lines(p)[0] == "beach: starting `beach host` on the-remote over ssh"
    all_gone(remote, tmp_path)


def test_a_remote_without_beach_is_one_clear_line_and_remote_beach_finds_it(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    remote.start_sshd("/usr/local/bin:/usr/bin:/bin", [authorized(remote.key)])
    argv = remote.args()  # ip netns exec HERE beach ssh DEST SSH-OPTIONS...
    check = subprocess.run(
        [*argv[:4], "ssh", *argv[7:], f"root@{THERE_ADDR}", "command -v beach"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert check.returncode == 1, f"the remote's login shell finds a beach anyway: {check}"
    p = start_around(remote, procs)
    assert end_around(p) == 16
    assert beach_lines(p)[1:] == [
        f"beach: no `beach` on root@{THERE_ADDR}'s PATH; install it there or give "
        "--remote-beach PATH"
    ]
    all_gone(remote, tmp_path)

    p = remote.start(procs, "--remote-beach", BEACH, "--", "sh", "-c", "echo found-it; read x")
    p.expect("found-it", timeout=SESSION_TIMEOUT)
    p.send("\r")
    assert p.exit_code() == 0
    all_gone(remote, tmp_path)


def test_ssh_failures_say_ssh_s_own_last_line(procs: Procs, remote: Remote, tmp_path: Path) -> None:
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    stranger = keygen(tmp_path / "stranger_key", "beach-test-stranger")
    p = start_around(remote, procs, key=stranger)
    assert end_around(p) == 15
    assert beach_lines(p)[1:] == [
        f"beach: ssh to root@{THERE_ADDR} failed: root@{THERE_ADDR}: Permission denied (publickey)."
    ]
    # Nothing listens on that port: ssh's own words again.
    argv = remote.args()
    argv[argv.index(str(SSH_PORT))] = "2223"
    p = procs.start(argv, TMPDIR=str(remote.local_tmp))
    assert p.exit_code() == 15
    assert beach_lines(p)[1:] == [
        f"beach: ssh to root@{THERE_ADDR} failed: ssh: connect to host {THERE_ADDR} port 2223: "
        "Connection refused"
    ]
    all_gone(remote, tmp_path)


def test_a_remote_host_that_ends_early_says_why(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """Before its join information (a bad option): exit 16 with the remote's own line. Just
    after it (it cannot record): the remote's line, either after the failed join's own (the
    information came through) or as the reason there was none (the host was gone first)."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    p = start_around(remote, procs, "--host-arg=--max-duration=forever")
    assert end_around(p) == 17
    said = beach_lines(p)[1:]
    assert len(said) == 1 and said[0].startswith(
        f"beach: beach host on root@{THERE_ADDR} ended (exit 2) before giving its join "
        "information: Invalid value for '--max-duration': 'forever' is not a duration"
    ), said
    all_gone(remote, tmp_path)

    p = start_around(remote, procs, f"--host-arg=--record={tmp_path}/no/such/dir/x.cast")
    code = end_around(p)
    said = [line for line in beach_lines(p)[1:] if not line.startswith("beach: joining ")]
    why = f"cannot record to {tmp_path}/no/such/dir/x.cast: No such file or directory"
    assert len(said) == 1, said
    assert said[0].endswith(f"(root@{THERE_ADDR}: {why})") or (
        code == 17 and said[0].endswith(f"before giving its join information: {why}")
    ), said
    assert code != 0
    all_gone(remote, tmp_path)


def test_a_host_admitting_only_your_key_is_joined_with_ssh_s_key(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """--host-arg=--authorized-keys: the joiner proves ssh's -i key (a file, no agent). A host
    that admits another key refuses it: exit 13, and the remote host is ended all the same."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    ours = f"--host-arg=--authorized-keys={remote.key}.pub"
    p = remote.start(procs, ours, "--", "sh", "-c", "echo key-$((1+1)); read x")
    p.expect("key-2", timeout=SESSION_TIMEOUT)
    p.send("\r")
    assert p.exit_code() == 0
    all_gone(remote, tmp_path)

    stranger = keygen(tmp_path / "stranger_key", "beach-test-stranger")
    p = start_around(remote, procs, f"--host-arg=--authorized-keys={stranger}.pub")
    assert end_around(p, timeout=SESSION_TIMEOUT) == 13
    assert "this session admits only certain SSH keys" in beach_lines(p)[-1]
    all_gone(remote, tmp_path)


# A `beach` on the remote that writes an info file of the test's choosing and stays.
FAKE_BEACH = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --info-file ] && f="$2"; shift; done
cat "{content}" >"$f"
echo "beach sharing session (or so it says)"
exec sleep 60
"""

# Info files no beach host writes.
ABSURD_INFO = {
    "binary": os.urandom(3000).replace(b"\n", b"!"),
    "huge": b'{"session": "' + b"a" * 10_000_000 + b'"}\n',
    "one-long-line": b"x" * 200_000,
    "deep": b"[" * 30_000 + b"]" * 30_000,
    "escapes": json.dumps(
        {
            "session": "\x1b]52;c;cHduZWQ=\x07",
            "join_token": "\x1b[2J\x1b]0;pwned\x07abc-def",
            "server": "ws://127.0.0.1:1/ws",
        }
    ).encode(),
    "view-only": json.dumps(
        {"session": "abc123", "join_token": "abc123-v-xyz789", "server": "ws://127.0.0.1:1/ws"}
    ).encode(),
    "list": b"[1, 2, 3]",
}

# Forced commands (authorized_keys command="...") that replace the remote script entirely.
HOSTILE_REMOTES = {
    "random-bytes": "head -c 3000000 /dev/urandom",
    "endless-info": "echo beach-ssh: join information follows; yes abcdefgh",
    "escapes-then-exit": "printf '\\033]0;pwned\\007\\033[2J'; printf '\\033]0;pwned\\007x\\n' >&2",
    "silence-then-exit": "exit 3",
}


def check_one_clear_line(p: Proc, code: int) -> None:
    assert code == 17, p.transcript.getvalue()[-2000:]
    said = beach_lines(p)
    assert len(said) == 2, said
    assert said[1].startswith(f"beach: beach host on root@{THERE_ADDR} "), said
    text = p.transcript.getvalue()
    assert "Traceback" not in text
    assert "pwned\x07" not in text and "\x1b]52" not in text and "\x1b[2J" not in text


@pytest.mark.parametrize("kind", sorted(ABSURD_INFO))
def test_an_absurd_info_file_is_one_clear_line(
    procs: Procs, remote: Remote, tmp_path: Path, kind: str
) -> None:
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    content = tmp_path / "content"
    content.write_bytes(ABSURD_INFO[kind])
    fake = tmp_path / "fake-beach"
    fake.write_text(FAKE_BEACH.format(content=content))
    fake.chmod(0o755)
    p = start_around(remote, procs, "--remote-beach", str(fake))
    check_one_clear_line(p, end_around(p))
    assert "gave no usable join information" in beach_lines(p)[1]
    all_gone(remote, tmp_path)


@pytest.mark.parametrize("kind", sorted(HOSTILE_REMOTES))
def test_a_remote_that_is_not_beach_is_one_clear_line(
    procs: Procs, remote: Remote, tmp_path: Path, kind: str
) -> None:
    """What the remote sends instead of our script's output: the remote, not beach."""
    remote.start_sshd(beach_path(), [authorized(remote.key, HOSTILE_REMOTES[kind])])
    p = start_around(remote, procs)
    check_one_clear_line(p, end_around(p))
    all_gone(remote, tmp_path)


# Holds the real host's banner back: the host runs (its info file is written), and `beach
# ssh` waits for the information that never comes.
MUTED_BEACH = f"""#!/bin/sh
exec "{BEACH}" "$@" >/dev/null
"""


def test_ctrl_c_while_connecting_leaves_nothing_behind(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    muted = tmp_path / "muted-beach"
    muted.write_text(MUTED_BEACH)
    muted.chmod(0o755)
    p = remote.start(procs, "--remote-beach", str(muted))
    deadline = time.monotonic() + SESSION_TIMEOUT
    while not list(remote.tmp.glob("beach-ssh.*/info.json")):  # the remote host is up
        assert time.monotonic() < deadline, "the remote host never started"
        assert p.child.isalive(), p.transcript.getvalue()
        time.sleep(0.05)
    assert mentioning(str(remote.tmp), set()), "no remote beach host to leave behind"
    p.send("\x03")
    p.expect("beach: interrupted")
    assert p.exit_code() == 130
    all_gone(remote, tmp_path)


def test_a_lost_ssh_connection_ends_the_session(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """ssh killed during the session: the remote host ends (its lifeline is gone), and so
    does `beach ssh`, saying so, with the terminal restored."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    p = start_around(remote, procs, "--", "sh", "-c", "echo ready-to-lose; read x")
    p.expect("ready-to-lose", timeout=SESSION_TIMEOUT)
    ssh = [
        int(line.split(":")[0])
        for line in mentioning(str(remote.key), {remote.sshd.pid if remote.sshd else 0})
        if " ssh -T " in f" {line.split(': ', 1)[1]}"
    ]
    assert len(ssh) == 1, mentioning(str(remote.key), set())
    os.kill(ssh[0], signal.SIGKILL)
    assert end_around(p, timeout=TIMEOUT + 10) == 8
    assert beach_lines(p)[-1] == (
        f"beach: the ssh connection to root@{THERE_ADDR} ended (ssh killed by signal 9)"
    )
    all_gone(remote, tmp_path)


def test_a_configured_server_is_used_by_both_ends(
    procs: Procs, remote: Remote, tmp_path: Path
) -> None:
    """BEACH_SERVER here: the remote host registers there too, and the joiner meets it there
    (no tunnel)."""
    remote.start_sshd(beach_path(), [authorized(remote.key)])
    serve = procs.start(
        [*Net.exec(remote.there), BEACH, "serve", "--host", THERE_ADDR, "--port", "0"]
    )
    serve.expect(r"listening on (ws://\S+)")
    url = serve.child.match.group(1)
    p = remote.start(procs, "--", "sh", "-c", "echo via-$BEACH_SESSION; read x", BEACH_SERVER=url)
    p.expect(r"via-(\w+)", timeout=SESSION_TIMEOUT)
    session = p.child.match.group(1)
    serve.expect(rf"session {session} registered by {THERE_ADDR}")
    p.send("\r")
    assert p.exit_code() == 0
    all_gone(remote, tmp_path)
