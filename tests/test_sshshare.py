"""`beach ssh`'s pieces that need no process: the remote command line, the options it keeps
for itself, and reading the remote's join information (tests/test_e2e_ssh.py runs it all
against a real sshd)."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import pytest

from beach_cli.sshshare.info import MAX_NOISE_LINES, BadInfo, parse_info, read_info
from beach_cli.sshshare.remote import BEGIN, END, SCRIPT, remote_command
from beach_cli.sshshare.share import reserved_host_arg
from beach_cli.sshshare.ssh import ssh_argv

GOOD = {"session": "abc123", "join_token": "abc123-xyz789", "server": "ws://127.0.0.1:4567/ws"}


def test_the_remote_command_line_is_sh_with_the_script_and_every_word_quoted() -> None:
    line = remote_command("/opt/my beach", ["--host-arg", "it's"], ["echo", "$HOME"], "xterm")
    words = shlex.split(line)
    assert words == [
        *("sh", "-c", SCRIPT, "beach-ssh", "/opt/my beach", "xterm", "--host-arg", "it's"),
        *("--", "echo", "$HOME"),
    ]
    # Nothing in the script a login shell other than sh (fish, csh) would read differently.
    assert "'" not in SCRIPT and "\\" not in SCRIPT and "\n" not in SCRIPT


def test_a_strange_term_is_not_passed_on() -> None:
    assert shlex.split(remote_command("beach", [], [], "xterm\x1b;rm -rf"))[5] == ""


def test_ssh_gets_our_options_first_then_the_users_then_the_destination() -> None:
    argv = ssh_argv("me@box", ["-o", "ControlPath=theirs", "-p", "2"], None, "CMD")
    ours = ["ssh", "-T", "-e", "none"]
    assert argv == [*ours, "-o", "ControlPath=theirs", "-p", "2", "--", "me@box", "CMD"]
    with_control = ssh_argv("box", [], Path("/tmp/c"), "CMD")
    assert with_control[4:10] == [
        *("-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-S", "/tmp/c"),
    ]


@pytest.mark.parametrize(
    "arg", ["--server=x", "--server", "--info-file", "--port=1", "--bind", "--", "--headless"]
)
def test_options_beach_ssh_sets_itself_are_refused_as_host_args(arg: str) -> None:
    assert reserved_host_arg(arg) is not None


@pytest.mark.parametrize("arg", ["--max-duration=1h", "--record", "x.cast", "--size=80x24"])
def test_other_host_args_pass(arg: str) -> None:
    assert reserved_host_arg(arg) is None


def test_good_information_gives_the_token_and_the_port_to_forward() -> None:
    info = parse_info(json.dumps(GOOD).encode())
    assert (info.session, info.token, info.loopback_port) == ("abc123", "abc123-xyz789", 4567)
    elsewhere = parse_info(json.dumps({**GOOD, "server": "wss://beach.example.com"}).encode())
    assert elsewhere.loopback_port is None and elsewhere.server == "wss://beach.example.com/ws"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        b"[" * 50_000,
        b'"a string"',
        json.dumps({**GOOD, "join_token": "abc123-v-xyz789"}).encode(),  # view-only
        json.dumps({**GOOD, "join_token": "other1-xyz789"}).encode(),  # another session's
        json.dumps({**GOOD, "join_token": "\x1b[2Jabc-def"}).encode(),
        json.dumps({**GOOD, "session": 7}).encode(),
        json.dumps({**GOOD, "server": "ftp://x"}).encode(),
        json.dumps({**GOOD, "server": "ws://127.0.0.1/ws"}).encode(),  # loopback, no port
        json.dumps({**GOOD, "server": "ws://127.0.0.1:99999/ws"}).encode(),
    ],
)
def test_bad_information_is_bad_info_with_no_control_character(body: bytes) -> None:
    with pytest.raises(BadInfo) as caught:
        parse_info(body)
    assert "\x1b" not in caught.value.message


def reader(*lines: bytes):
    queue = list(lines)

    async def readline() -> bytes:
        return queue.pop(0) if queue else b""

    return readline


def test_noise_before_the_information_is_skipped_and_bounded() -> None:
    body = json.dumps(GOOD).encode() + b"\n"
    got = asyncio.run(
        read_info(reader(b"welcome!\n", BEGIN.encode() + b"\n", body, END.encode() + b"\n"))
    )
    assert got is not None and got.token == "abc123-xyz789"
    assert asyncio.run(read_info(reader(b"no information at all\n"))) is None
    with pytest.raises(BadInfo):
        asyncio.run(read_info(reader(*[b"noise\n"] * (MAX_NOISE_LINES + 1))))
    with pytest.raises(BadInfo):  # cut short
        asyncio.run(read_info(reader(BEGIN.encode() + b"\n", body)))
