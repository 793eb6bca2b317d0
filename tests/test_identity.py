# ruff: noqa: F811 (loop_thread is test_hostile_joiner's fixture)
"""Only the people you name: `beach host --authorized-keys FILE / --github-user NAME`, and the
joiner's proof through a real ssh-agent or `beach join -i FILE`. Keys are made by ssh-keygen,
signatures checked against OpenSSH's own `ssh-keygen -Y`, accounts' keys served by a real
HTTP server, and a crafted joiner (beach's own modules) tries what a token holder without an
allowed key could.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from conftest import TIMEOUT, Procs, free_port, need, shell_ready, start_host
from loop_thread import LoopThread
from test_hostile_joiner import confirmed_keys, loop_thread  # noqa: F401 (a fixture)

from beach_cli.errors import KeyRefused, KeysUnavailable, ProtocolError
from beach_cli.identity import proof
from beach_cli.identity.allowed import AllowedKeys, parse_authorized_keys, read_authorized_keys
from beach_cli.identity.proof import ProofRefused
from beach_cli.identity.signer import Identity, load_identity, prove
from beach_cli.keys import KeyExchange, parse_token
from beach_cli.rendezvous import SignalingClient
from beach_cli.wire.keyplane import R_KEY_REFUSED, parse_payload, parse_sealed

BEACH = str(Path(sys.executable).with_name("beach"))
PASSPHRASE = "correct horse"


@dataclass
class Key:
    name: str  # its comment
    path: Path  # the private key file (Path + ".pub": the public one)

    @property
    def pub(self) -> Path:
        return self.path.with_name(self.path.name + ".pub")

    @property
    def line(self) -> str:
        return self.pub.read_text().strip()

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.line.split()[1])

    @property
    def fingerprint(self) -> str:
        return proof.fingerprint(self.blob)


KINDS = {  # comment -> ssh-keygen arguments
    "alice@laptop": ["-t", "ed25519"],
    "carol": ["-t", "ecdsa", "-b", "384"],
    "bob": ["-t", "rsa", "-b", "3072"],
    "mallory": ["-t", "ed25519"],  # allowed nowhere
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    keygen = need("ssh-keygen")
    d = tmp_path_factory.mktemp("keys")
    made = {}
    for name, args in {**KINDS, "erin": ["-t", "ed25519"]}.items():
        path = d / name.split("@")[0]
        secret = PASSPHRASE if name == "erin" else ""
        cmd = [keygen, "-q", *args, "-N", secret, "-C", name, "-f", str(path)]
        subprocess.run(cmd, check=True, timeout=60)
        made[name] = Key(name, path)
    return made


class Agent:
    """A real ssh-agent on a socket of its own; `add` loads keys into it with ssh-add."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.proc = subprocess.Popen(
            [need("ssh-agent"), "-D", "-a", str(sock)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT
        while not sock.exists():  # the agent makes its socket as it starts listening
            assert self.proc.poll() is None and time.monotonic() < deadline, "no ssh-agent"
            time.sleep(0.02)

    def add(self, *keys: Key) -> None:
        env = {**os.environ, "SSH_AUTH_SOCK": str(self.sock)}
        for key in keys:
            cmd = [need("ssh-add"), "-q", str(key.path)]
            subprocess.run(cmd, check=True, env=env, timeout=30, capture_output=True)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path / "agent.sock")
    yield a
    a.close()


def allowed_file(tmp_path: Path, *keys: Key) -> Path:
    path = tmp_path / "allowed_keys"
    path.write_text("".join(k.line + "\n" for k in keys))
    return path


# -- what is signed: OpenSSH's SSHSIG, checked by OpenSSH itself -------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def armored(blob: bytes, signature: bytes) -> str:
    """An SSHSIG file (OpenSSH PROTOCOL.sshsig) around a proof's key and signature."""
    body = (
        b"SSHSIG"
        + struct.pack(">I", 1)
        + _string(blob)
        + _string(proof.NAMESPACE)
        + _string(b"")
        + _string(proof.HASH)
        + _string(signature)
    )
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"


def ssh_keygen_verifies(tmp_path: Path, binding: bytes, made: dict[str, Any], ns: str) -> bool:
    keygen = need("ssh-keygen")
    sig = tmp_path / "proof.sig"
    sig.write_text(armored(base64.b64decode(made["key"]), base64.b64decode(made["sig"])))
    done = subprocess.run(
        [keygen, "-Y", "check-novalidate", "-n", ns, "-s", str(sig)],
        input=binding,
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


BINDING = bytes(range(32))


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["alice@laptop", "carol", "bob"])
def test_a_proof_is_an_sshsig_signature_openssh_verifies(
    keys: dict[str, Key], agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Through the agent and from the key file, the signature is OpenSSH's SSHSIG over this
    handshake's binding in beach's namespace: `ssh-keygen -Y` accepts it there and nowhere
    else, so it can never pass for a login's or a git commit's signature."""
    key = keys[name]
    agent.add(key)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.sock))
    hints = [proof.hint(BINDING, key.blob)]
    by_agent = asyncio.run(prove(BINDING, hints, None))
    by_file = asyncio.run(prove(BINDING, hints, load_identity(key.path)))
    for made in (by_agent, by_file):
        assert made["t"] == "proof" and base64.b64decode(made["key"]) == key.blob
        assert ssh_keygen_verifies(tmp_path, BINDING, made, "beach-join")
        assert not ssh_keygen_verifies(tmp_path, BINDING, made, "git")
        assert not ssh_keygen_verifies(tmp_path, BINDING[::-1], made, "beach-join")
        sig = base64.b64decode(made["sig"])
        if name == "bob":  # RSA signs with SHA-2, never SHA-1
            assert proof.signature_algorithm(sig) == b"rsa-sha2-512"
        allowed = AllowedKeys(parse_authorized_keys(key.line, "test"))
        assert allowed.check(BINDING, made["key"], made["sig"]).label == name


# -- the host's allowed keys ---------------------------------------------------------------------


def test_authorized_keys_lines_as_openssh_writes_them(
    keys: dict[str, Key], caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob, carol = keys["alice@laptop"], keys["bob"], keys["carol"]
    blob = alice.line.split()[1]
    text = "\n".join(
        [
            "# a comment, then a blank line",
            "",
            f'from="10.0.0.0/8",command="echo \\"hi there\\"" {bob.line}',
            f"   {carol.line}   ",
            f"cert-authority {alice.line}",
            "ssh-ed25519 not-base64!! eve",
            f"sk-ssh-ed25519@openssh.com {blob} yubi",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP8 old",
            "garbage",
            "\x1b]0;evil\x07",
        ]
    )
    with caplog.at_level(logging.WARNING, "beach.identity"):
        found = parse_authorized_keys(text, "keys")
    assert [k.label for k in found] == ["bob", "carol"]
    assert found[0].fingerprint == bob.fingerprint
    said = caplog.text
    assert "keys, line 3: options" in said and "no restriction" in said
    assert "line 5: a certificate authority" in said
    for n in (6, 7, 8, 9, 10):
        assert f"line {n}:" in said
    assert "\x1b" not in said


def test_a_file_without_usable_keys_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(KeysUnavailable, match="lists no key beach can use"):
        read_authorized_keys(empty)
    with pytest.raises(KeysUnavailable, match="cannot read"):
        read_authorized_keys(tmp_path / "missing")
    huge = tmp_path / "huge"
    huge.write_bytes(b"#" * (2 * 1024 * 1024))
    with pytest.raises(KeysUnavailable, match="larger than"):
        read_authorized_keys(huge)


def _signed_by(key: Key, binding: bytes, algorithm: bytes | None = None) -> tuple[str, str]:
    private = asyncssh.import_private_key(key.path.read_bytes())
    alg = algorithm or private.sig_algorithms[0]
    sig = private.sign(proof.signed_data(binding), alg)
    return base64.b64encode(key.blob).decode(), base64.b64encode(sig).decode()


def test_the_host_refuses_every_proof_but_a_fresh_one_from_an_allowed_key(
    keys: dict[str, Key],
) -> None:
    alice, bob, mallory = keys["alice@laptop"], keys["bob"], keys["mallory"]
    allowed = AllowedKeys(parse_authorized_keys(alice.line + "\n" + bob.line, "test"))
    assert allowed.check(BINDING, *_signed_by(alice, BINDING)).label == "alice@laptop"
    other = bytes(32)
    cases = {
        "not allowed": _signed_by(mallory, BINDING),
        # a proof made for another handshake (what a dishonest server could try to replay)
        "does not match": _signed_by(alice, other),
        # SHA-1 RSA signatures are refused even from an allowed key
        "does not accept (ssh-rsa)": _signed_by(bob, BINDING, b"ssh-rsa"),
        # alice's key with bob's signature
        "does not accept": (_signed_by(alice, BINDING)[0], _signed_by(bob, BINDING)[1]),
        "malformed": ("%%%", "AAAA"),
    }
    for why, (key_b64, sig_b64) in cases.items():
        with pytest.raises(ProofRefused, match=re.escape(why)):
            allowed.check(BINDING, key_b64, sig_b64)
    key_b64, sig_b64 = _signed_by(alice, BINDING)
    truncated = base64.b64encode(base64.b64decode(sig_b64)[:-3]).decode()
    with pytest.raises(ProofRefused, match="does not match"):
        allowed.check(BINDING, key_b64, truncated)
    with pytest.raises(ProofRefused):
        allowed.check(BINDING, key_b64, base64.b64encode(b"\xff\xff\xff\xff").decode())


def test_hints_name_keys_for_one_handshake_only(keys: dict[str, Key]) -> None:
    alice = keys["alice@laptop"]
    allowed = AllowedKeys(parse_authorized_keys(alice.line, "test"))
    first, second = allowed.hints(BINDING), allowed.hints(bytes(32))
    assert first != second and len(first[0]) <= 32
    assert alice.line.split()[1] not in json.dumps(first)
    with pytest.raises(KeysUnavailable, match="at most 512"):
        many = [parse_authorized_keys(alice.line, "t")[0]] * 2
        blobs = [type(many[0])(bytes([i % 256, i // 256]), "", many[0].key) for i in range(513)]
        AllowedKeys(blobs)


def test_sealed_key_messages_are_checked() -> None:
    def sealed(msg: dict[str, Any]) -> dict[str, Any]:
        return parse_sealed(json.dumps(msg).encode())

    assert sealed({"t": "prove", "hints": ["a" * 32]})["hints"] == ["a" * 32]
    assert sealed({"t": "proof", "key": "k", "sig": "s"})["t"] == "proof"
    for bad in (
        {"t": "prove"},
        {"t": "prove", "hints": "abc"},
        {"t": "prove", "hints": ["h"] * 513},
        {"t": "prove", "hints": [1]},
        {"t": "prove", "hints": ["a" * 33]},
        {"t": "proof", "key": "k"},
        {"t": "proof", "key": "", "sig": "s"},
        {"t": "proof", "key": "k", "sig": "s" * 4097},
    ):
        with pytest.raises(ProtocolError):
            sealed(bad)


# -- the joiner's side: keys it will not use ---------------------------------------------------


def test_a_joiner_signs_nothing_the_host_did_not_ask_for_by_hint(
    keys: dict[str, Key], agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host (or anyone holding the token) whose hints name none of our keys gets no
    signature: KeyRefused, saying how many keys the agent offered."""
    agent.add(keys["alice@laptop"], keys["bob"])
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.sock))
    hints = [proof.hint(BINDING, keys["mallory"].blob), "x" * 16]
    with pytest.raises(KeyRefused, match="none of the 2 keys in your ssh-agent"):
        asyncio.run(prove(BINDING, hints, None))
    with pytest.raises(KeyRefused, match="is not one of them"):
        asyncio.run(prove(BINDING, hints, load_identity(keys["alice@laptop"].path)))
    pub_only = load_identity(keys["mallory"].pub)
    assert isinstance(pub_only, Identity) and pub_only.private is None
    with pytest.raises(KeyRefused, match="not in your ssh-agent"):
        asyncio.run(prove(BINDING, [proof.hint(BINDING, keys["mallory"].blob)], pub_only))
    monkeypatch.delenv("SSH_AUTH_SOCK")
    with pytest.raises(KeyRefused, match="run an ssh-agent"):
        asyncio.run(prove(BINDING, hints, None))
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
    with pytest.raises(KeyRefused, match="could not use your ssh-agent"):
        asyncio.run(prove(BINDING, hints, None))


# -- end to end: real host, real joiners, a real agent -------------------------------------------


def host_with_keys(procs: Procs, tmp_path: Path, server: str, *opts: str) -> tuple[Any, dict, Path]:
    log_file = tmp_path / "host.log"
    logging_opts = ("--log-file", str(log_file), "--log-level", "info")
    host, info = start_host(procs, tmp_path, server, *opts, global_opts=logging_opts)
    shell_ready(host)
    return host, info, log_file


def join_with(procs: Procs, info: dict, agent: Agent | None, *opts: str, view: bool = False):
    cmd = info["view_join_command" if view else "join_command"]
    sock = str(agent.sock) if agent is not None else ""
    return procs.start([BEACH, "join", *opts, *cmd[2:]], SSH_AUTH_SOCK=sock)


def detach_and_end(joiner: Any, host: Any) -> None:
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    host.send("exit\r")
    assert host.exit_code() == 0


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["alice@laptop", "carol", "bob"])
def test_a_named_key_joins_and_the_host_names_it(
    procs: Procs, server: str, tmp_path: Path, keys: dict[str, Key], agent: Agent, name: str
) -> None:
    key = keys[name]
    allowed = allowed_file(tmp_path, *(keys[n] for n in ("alice@laptop", "carol", "bob")))
    agent.add(keys["mallory"], key)  # the agent's first key is not the allowed one
    host, info, log_file = host_with_keys(
        procs, tmp_path, server, "--authorized-keys", str(allowed)
    )
    assert "only holders of these 3 SSH keys may join" in host.transcript.getvalue()
    joiner = join_with(procs, info, agent)
    shell_ready(joiner)
    joiner.send("echo proven-$((40+2))\r")
    joiner.expect("proven-42")
    host.expect("proven-42")
    # The host's notice (its terminal title here) names the key: comment and fingerprint.
    host.read_for(2, until=re.escape(key.fingerprint))
    assert f"key {name} {key.fingerprint}" in host.transcript.getvalue()
    assert f"proved key {name} {key.fingerprint}" in log_file.read_text()
    detach_and_end(joiner, host)


def the_key_holder_gets_in_at_once(procs: Procs, info: dict, agent: Agent, host: Any) -> None:
    """No wrong guess was counted before: the next joiner with an allowed key is not held."""
    good = join_with(procs, info, agent)
    shell_ready(good)
    assert "slowing joins" not in good.transcript.getvalue()
    detach_and_end(good, host)


@pytest.mark.e2e
def test_without_an_allowed_key_a_joiner_is_refused_before_any_channel_and_no_guess(
    procs: Procs, server: str, tmp_path: Path, keys: dict[str, Key], agent: Agent
) -> None:
    """Exit 13 with a line saying what to do; the host says someone holding the token was
    refused; none of it counts as a wrong token (an allowed joiner is not slowed after more
    refusals than the free guesses), for either role."""
    allowed = allowed_file(tmp_path, keys["alice@laptop"])
    agent.add(keys["mallory"])
    host, info, log_file = host_with_keys(
        procs, tmp_path, server, "--authorized-keys", str(allowed)
    )
    for view in (False, True, False, False, True):
        refused = join_with(procs, info, agent, view=view)
        refused.expect("this session admits only certain SSH keys, and none of the 1 key")
        assert refused.exit_code() == 13
    nobody = join_with(procs, info, None)
    nobody.expect("run an ssh-agent holding yours")
    assert nobody.exit_code() == 13
    assert "Traceback" not in nobody.transcript.getvalue()
    agent.add(keys["alice@laptop"])
    the_key_holder_gets_in_at_once(procs, info, agent, host)
    text = log_file.read_text()
    assert text.count("refused: it has none of the allowed SSH keys") == 6, text
    assert "wrong" not in text, text


@pytest.mark.e2e
def test_identity_files(
    procs: Procs, server: str, tmp_path: Path, keys: dict[str, Key], agent: Agent
) -> None:
    """`-i` a private key (no agent at all), a passphrase-protected one (asked on the
    terminal before dialing), a `.pub` naming a key in the agent; mistakes are one line."""
    alice, erin = keys["alice@laptop"], keys["erin"]
    allowed = allowed_file(tmp_path, alice, erin)
    host, info, log_file = host_with_keys(
        procs, tmp_path, server, "--authorized-keys", str(allowed)
    )

    by_file = join_with(procs, info, None, "-i", str(alice.path))
    shell_ready(by_file)
    by_file.send("\x1dd")
    assert by_file.exit_code() == 0

    asked = join_with(procs, info, None, "-i", str(erin.path))
    asked.expect("passphrase for")
    asked.send("not it\r")
    asked.expect("wrong passphrase")
    asked.expect("passphrase for")
    asked.send(PASSPHRASE + "\r")
    shell_ready(asked)
    asked.send("\x1dd")
    assert asked.exit_code() == 0

    agent.add(keys["mallory"], alice)
    by_pub = join_with(procs, info, agent, "-i", str(alice.pub))
    shell_ready(by_pub)
    by_pub.send("\x1dd")
    assert by_pub.exit_code() == 0

    no_tty = subprocess.run(
        [BEACH, "join", "-i", str(erin.path), *info["join_command"][2:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "SSH_AUTH_SOCK": ""},
    )
    assert no_tty.returncode == 1
    assert "is encrypted and there is no terminal" in no_tty.stderr and "ssh-add" in no_tty.stderr
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("hello\n")
    bad = join_with(procs, info, None, "-i", str(not_a_key))
    bad.expect("is not an SSH key beach can read")
    assert bad.exit_code() == 1
    host.send("exit\r")
    assert host.exit_code() == 0
    assert log_file.read_text().count(f"proved key alice@laptop {alice.fingerprint}") == 2


# -- --github-user: keys published at a URL ------------------------------------------------------


@pytest.fixture
def keys_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server (python -m http.server) standing in for github.com: NAME.keys files."""
    site = tmp_path / "site"
    site.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "no http.server"
            time.sleep(0.05)
    yield url, site
    proc.kill()
    proc.wait(10)


@pytest.mark.e2e
def test_github_user_admits_the_keys_that_account_publishes(
    procs: Procs,
    server: str,
    tmp_path: Path,
    keys: dict[str, Key],
    agent: Agent,
    keys_site: tuple[str, Path],
) -> None:
    url, site = keys_site
    # As github.com serves them: the key type and the key, no comment.
    lines = [" ".join(keys[n].line.split()[:2]) for n in ("alice@laptop", "bob")]
    (site / "octo-cat.keys").write_text("\n".join(lines) + "\n")
    agent.add(keys["bob"])
    host, info, log_file = host_with_keys(
        procs, tmp_path, server, "--github-user", "octo-cat", "--keys-url", url + "/"
    )
    assert "(github:octo-cat)" in host.transcript.getvalue()
    joiner = join_with(procs, info, agent)
    shell_ready(joiner)
    assert f"proved key github:octo-cat {keys['bob'].fingerprint}" in log_file.read_text()
    detach_and_end(joiner, host)


@pytest.mark.e2e
def test_github_user_failures_end_the_host_before_it_registers(
    procs: Procs, tmp_path: Path, keys_site: tuple[str, Path]
) -> None:
    url, site = keys_site
    (site / "empty.keys").write_text("")
    (site / "huge.keys").write_bytes(b"#" * (300 * 1024))
    (site / "junk.keys").write_text("<html>not keys</html>\n")
    dead = f"http://127.0.0.1:{free_port()}"
    cases: list[tuple[list[str], int, str]] = [
        (["--github-user", "nobody-here", "--keys-url", url], 14, "no account 'nobody-here'"),
        (["--github-user", "empty", "--keys-url", url], 14, "empty has published no SSH key"),
        (["--github-user", "junk", "--keys-url", url], 14, "junk has published no SSH key"),
        (["--github-user", "huge", "--keys-url", url], 14, "sent more than 256 KiB"),
        (["--github-user", "x", "--keys-url", dead], 14, "could not fetch x's keys"),
        (["--github-user", "bad_name"], 2, "is not a GitHub account name"),
        (["--github-user", "-dash"], 2, "is not a GitHub account name"),
        (["--github-user", "ok", "--keys-url", "file:///etc"], 2, "must be an http(s) URL"),
        (["--authorized-keys", str(tmp_path / "missing")], 14, "cannot read"),
    ]
    for opts, code, line in cases:
        done = subprocess.run(
            [BEACH, "host", "--headless", "--port", str(free_port()), *opts, "--", "true"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        said = done.stdout + done.stderr
        assert done.returncode == code, (opts, said)
        assert line in said and "Traceback" not in said, (opts, said)
        assert "sharing session" not in said, (opts, said)


# -- a crafted joiner: the right token, no allowed key -----------------------------------------


async def crafted_proof(
    server: str, token_text: str, forge: Callable[[KeyExchange, list[str]], dict[str, Any]]
) -> dict[str, Any]:
    """The real handshake up to the host's request for a key, then `forge`'s proof: what the
    host answers (its reject, or its offer)."""
    token = parse_token(token_text)
    sig = SignalingClient(server)
    await sig.connect(TIMEOUT)
    try:
        kx = await confirmed_keys(sig, token, TIMEOUT)
        await sig.send("signal", to="host", data=kx.seal({"t": "join"}))
        while True:
            msg = await sig.recv(TIMEOUT)
            if msg["type"] != "signal":
                continue
            data = parse_payload(msg["data"])
            if data["k"] == "reject":
                return data
            sealed = kx.open(data)
            if sealed["t"] == "prove":
                await sig.send("signal", to="host", data=kx.seal(forge(kx, sealed["hints"])))
            else:
                return sealed
    finally:
        await sig.close()


@pytest.mark.e2e
def test_forged_proofs_are_refused_and_the_host_goes_on(
    procs: Procs,
    server: str,
    tmp_path: Path,
    keys: dict[str, Key],
    agent: Agent,
    loop_thread: LoopThread,
) -> None:
    alice, mallory = keys["alice@laptop"], keys["mallory"]
    allowed = allowed_file(tmp_path, alice)
    host, info, log_file = host_with_keys(
        procs, tmp_path, server, "--authorized-keys", str(allowed)
    )
    saved: dict[str, Any] = {}

    def honest(kx: KeyExchange, hints: list[str]) -> dict[str, Any]:
        key_b64, sig_b64 = _signed_by(alice, kx.proof_binding())
        saved["proof"] = {"t": "proof", "key": key_b64, "sig": sig_b64}
        return saved["proof"]

    forgeries: dict[str, Callable[[KeyExchange, list[str]], dict[str, Any]]] = {
        "replayed": lambda kx, hints: saved["proof"],  # a proof from an earlier handshake
        "another key": lambda kx, hints: dict(
            zip(("key", "sig"), _signed_by(mallory, kx.proof_binding()), strict=True), t="proof"
        ),
        "alice's key, mallory's signature": lambda kx, hints: {
            "t": "proof",
            "key": _signed_by(alice, kx.proof_binding())[0],
            "sig": _signed_by(mallory, kx.proof_binding())[1],
        },
        "empty blobs": lambda kx, hints: {"t": "proof", "key": "AAAA", "sig": "AAAA"},
        "garbage": lambda kx, hints: {"t": "proof", "key": "!!!!", "sig": "????"},
    }
    answer = loop_thread.call(crafted_proof(server, info["join_token"], honest))
    assert answer["t"] == "offer"  # an honest proof gets the host's offer
    for name, forge in forgeries.items():
        answer = loop_thread.call(crafted_proof(server, info["join_token"], forge))
        assert answer == {"k": "reject", "reason": R_KEY_REFUSED}, name
    # The host still admits the real key holder, not slowed.
    agent.add(alice)
    the_key_holder_gets_in_at_once(procs, info, agent, host)
    text = log_file.read_text()
    assert text.count("refused: it proved") == len(forgeries), text
    assert "wrong" not in text, text


@pytest.mark.e2e
def test_approve_names_the_key_the_joiner_proved(
    procs: Procs, server: str, tmp_path: Path, keys: dict[str, Key], agent: Agent
) -> None:
    """With --approve, the question names the proven key (beach's word, not the server's)."""
    alice = keys["alice@laptop"]
    allowed = allowed_file(tmp_path, alice)
    host, info = start_host(
        procs, tmp_path, server, "--approve", "--authorized-keys", str(allowed), cols=200
    )
    shell_ready(host)
    agent.add(alice)
    joiner = join_with(procs, info, agent)
    joiner.expect("waiting for the host to let you in")
    question = f"read-write joiner with key alice@laptop {alice.fingerprint} wants to join"
    host.expect(re.escape(question))
    host.send("y")
    shell_ready(joiner)
    detach_and_end(joiner, host)
