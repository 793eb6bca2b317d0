"""Zero trust in the server: a real (malicious) signaling server in the test process relays for
real `beach host` and `beach join` processes, and tampers. Every attack must fail with a clear
error, and the attacker must receive no terminal byte."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from conftest import BEACH, Procs, shell_ready, start_host, start_join
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from loop_thread import LoopThread
from spake2 import SPAKE2_B

from beach_cli.server.app import Client, SignalServer, start_server
from beach_cli.wire.keyplane import payload
from beach_cli.wire.signaling import server_message

pytestmark = pytest.mark.e2e

Tamper = Callable[["EvilServer", Client, dict[str, Any]], dict[str, Any] | None]


class EvilServer(SignalServer):
    """The real server, plus a record of everything it received and a hook to tamper with
    each relayed `signal` (return None to swallow it)."""

    def __init__(self, tamper: Tamper | None = None) -> None:
        super().__init__()
        self.received: list[str] = []
        self.tamper = tamper
        self.state: dict[str, Any] = {}

    async def _dispatch(self, client: Client, raw: str) -> None:
        self.received.append(raw)
        await super()._dispatch(client, raw)

    def _on_signal(self, client: Client, msg: dict[str, Any]) -> None:
        if self.tamper is not None:
            tampered = self.tamper(self, client, msg)
            if tampered is None:
                return
            msg = tampered
        super()._on_signal(client, msg)


class ServerThread(LoopThread):
    """Runs a server on its own event loop in a thread, so tests can drive pexpect."""

    def __init__(self, server: EvilServer) -> None:
        super().__init__(timeout=10.0)
        self.server = server
        self.runner, port = self.call(start_server("127.0.0.1", 0, server))
        self.url = f"ws://127.0.0.1:{port}/ws"

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        super().stop()


@contextmanager
def evil(tamper: Tamper | None = None) -> Iterator[ServerThread]:
    st = ServerThread(EvilServer(tamper))
    try:
        yield st
    finally:
        st.stop()


def kind(msg: dict[str, Any]) -> str:
    return msg["data"].get("k", "")


def confirm_before_pake(srv: EvilServer, client: Client, msg: dict[str, Any]) -> Any:
    """A tamper hook: the host's key confirmation is delivered before its SPAKE2 message (held
    back, then sent right behind it), once."""
    if client.peer_id is None and not srv.state.get("done"):
        if kind(msg) == "pake":  # hold the host's SPAKE2 message...
            srv.state["pake"] = msg
            return None
        if kind(msg) == "confirm":  # ...and deliver it after its confirmation
            srv.state["done"] = True
            SignalServer._on_signal(srv, client, msg)  # the confirmation, unchanged
            return srv.state["pake"]
    return msg


# -- (a) swapping the DTLS fingerprint: the attacker offers its own peer connection ------------


class AttackerPeer:
    """The attacker's own aiortc endpoint; counts every byte anyone sends it."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.received = 0
        self.opened = False

    async def offer(self) -> str:
        channel = self.pc.createDataChannel("beach", ordered=True)

        @channel.on("open")
        def _open() -> None:
            self.opened = True

        @channel.on("message")
        def _message(data: bytes) -> None:
            self.received += len(data)

        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp


def forged_sealed(sdp: str, kind_: str, n: int = 0) -> dict[str, Any]:
    """The best a server can do without the key: seal under a key of its own."""
    key = ChaCha20Poly1305(os.urandom(32))
    body = json.dumps({"t": kind_, "sdp": sdp}).encode()
    return payload(
        "sealed", n=n, c=base64.b64encode(key.encrypt(n.to_bytes(12, "big"), body, b"")).decode()
    )


def test_swapped_offer_fingerprint_is_refused(procs: Procs, tmp_path) -> None:
    attacker = AttackerPeer()

    def swap_offer(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any]:
        # The first sealed message from the host is its offer: replace it with the attacker's.
        if client.peer_id is None and kind(msg) == "sealed" and not srv.state.get("swapped"):
            srv.state["swapped"] = True
            return {**msg, "data": forged_sealed(srv.state["sdp"], "offer", msg["data"]["n"])}
        return msg

    with evil(swap_offer) as st:
        st.server.state["sdp"] = st.call(attacker.offer())
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        joiner.expect("failed authentication")
        assert joiner.exit_code() == 10
        assert "Traceback" not in joiner.transcript.getvalue()
        assert st.server.state.get("swapped")
        assert not attacker.opened and attacker.received == 0
        st.call(attacker.pc.close())
        host.send("exit\r")
        assert host.exit_code() == 0


def test_swapped_answer_is_refused_by_the_host(procs: Procs, tmp_path) -> None:
    attacker = AttackerPeer()

    def swap_answer(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any]:
        if client.peer_id is not None and kind(msg) == "sealed":
            srv.state["swapped"] = True
            return {**msg, "data": forged_sealed(srv.state["sdp"], "answer", msg["data"]["n"])}
        return msg

    with evil(swap_answer) as st:
        st.server.state["sdp"] = st.call(attacker.offer())
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        joiner.expect("tampered or replayed message")  # the host's reject, by its code
        assert joiner.exit_code() == 10  # a security failure, not a refusal
        assert st.server.state.get("swapped")
        assert attacker.received == 0
        st.call(attacker.pc.close())
        host.send("exit\r")
        assert host.exit_code() == 0


def test_flipped_ciphertext_bit_is_refused(procs: Procs, tmp_path) -> None:
    def flip(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any]:
        if client.peer_id is None and kind(msg) == "sealed":
            raw = bytearray(base64.b64decode(msg["data"]["c"]))
            raw[len(raw) // 2] ^= 0x01
            return {**msg, "data": {**msg["data"], "c": base64.b64encode(bytes(raw)).decode()}}
        return msg

    with evil(flip) as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        joiner.expect("failed authentication")
        assert joiner.exit_code() == 10
        host.send("exit\r")
        assert host.exit_code() == 0


# -- (b) the server answers in the host's place --------------------------------------------------


def test_server_posing_as_the_host_learns_nothing(procs: Procs, tmp_path) -> None:
    """The server swallows the join and plays host itself, guessing the secret."""

    def impersonate(srv: EvilServer, client: Client, msg: dict[str, Any]) -> None:
        if client.peer_id is not None and kind(msg) == "pake":
            fake = SPAKE2_B(b"rw:guess1", idA=b"x", idB=b"y")
            m = base64.b64encode(fake.start()).decode()
            mac = base64.b64encode(os.urandom(32)).decode()
            for data in (payload("pake", m=m), payload("confirm", mac=mac)):
                client.send(server_message("signal", **{"from": "host"}, data=data))
            srv.state["posed"] = True
        elif client.peer_id is not None:
            srv.state.setdefault("after", []).append(msg["data"])
        return None  # the real host never hears of it

    with evil(impersonate) as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        joiner.expect("the join token is wrong or no longer valid")
        assert joiner.exit_code() == 6
        assert st.server.state.get("posed")
        # After the failed confirmation the joiner only said goodbye: no confirm, nothing sealed.
        assert [d["k"] for d in st.server.state.get("after", [])] == ["reject"]
        host.send("exit\r")
        assert host.exit_code() == 0


# -- (c) replays ----------------------------------------------------------------------------------


def test_replayed_sealed_message_is_refused(procs: Procs, tmp_path) -> None:
    def replay(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any]:
        if client.peer_id is None and kind(msg) == "sealed" and not srv.state.get("replayed"):
            srv.state["replayed"] = True
            target = srv.sessions[client.session.id].peers[msg["to"]]  # type: ignore[union-attr]
            # Deliver the sealed offer twice.
            target.send(server_message("signal", **{"from": "host"}, data=msg["data"]))
        return msg

    with evil(replay) as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        # The joiner reads signals after the offer only while it waits for the channel; an
        # early-relay joiner reads none (the relay owns the connection from the answer on, and
        # a signal then is never opened), so this checks the handshake's own refusal.
        joiner = start_join(procs, info, BEACH_EARLY_RELAY="0")
        joiner.expect("replayed")
        assert joiner.exit_code() == 10
        host.send("exit\r")
        assert host.exit_code() == 0


def test_sealed_message_from_an_earlier_attempt_is_refused(procs: Procs, tmp_path) -> None:
    def replay_old(srv: EvilServer, client: Client, msg: dict[str, Any]) -> dict[str, Any]:
        if client.peer_id is None and kind(msg) == "sealed" and msg["data"]["n"] == 0:
            old = srv.state.setdefault("first_offer", msg["data"])
            if old is not msg["data"]:
                srv.state["replayed"] = True
                return {**msg, "data": old}
        return msg

    with evil(replay_old) as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        first = start_join(procs, info)  # its offer is recorded (and works)
        shell_ready(first)
        first.send("\x1dd")
        assert first.exit_code() == 0
        second = start_join(procs, info)  # gets the first attempt's offer instead of its own
        second.expect("failed authentication")
        assert second.exit_code() == 10
        assert st.server.state.get("replayed")
        host.send("exit\r")
        assert host.exit_code() == 0


# -- what the server sees -------------------------------------------------------------------------


def encodings(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        secret.upper(),
        raw.hex(),
        base64.b64encode(raw).decode(),
        base64.b64encode(b"rw:" + raw).decode(),
        base64.b64encode(b"view:" + raw).decode(),
        base64.b32encode(raw).decode().rstrip("="),
    }


def test_the_server_never_receives_the_secret(procs: Procs, tmp_path) -> None:
    with evil() as st:
        host, info = start_host(procs, tmp_path, st.url)
        shell_ready(host)
        rw = start_join(procs, info)
        shell_ready(rw)
        view = start_join(procs, info, key="view_join_command")
        shell_ready(view)
        rw.send("echo secret-check-$((40+2))\r")
        for p in (host, rw, view):
            p.expect("secret-check-42")
        host.send("exit\r")
        assert host.exit_code() == 0
        received = "\n".join(st.server.received)
    secrets = [info["join_token"].split("-")[-1], info["view_token"].split("-")[-1]]
    assert len(st.server.received) > 6  # the whole handshake went through this server
    for secret in secrets:
        for form in encodings(secret):
            assert form not in received, f"{form!r} reached the server"
    assert "secret-check" not in received  # and no terminal byte either


# -- wrong tokens, guess limit, rate limit --------------------------------------------------------


def wrong_token(info: dict) -> list[str]:
    cmd = list(info["join_command"])
    cmd[-1] = info["session"] + "-wr0ng9"[:0] + "-" + "zzzzzz"
    return [BEACH, *cmd[1:]]


def test_wrong_token_notifies_the_host(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    bad = procs.start(wrong_token(info))
    bad.expect("the join token is wrong")
    assert bad.exit_code() == 6
    host.expect("wrong token from")  # in the host's terminal title
    host.send("exit\r")
    assert host.exit_code() == 0


def test_wrong_tokens_past_the_guess_limit_replace_only_that_roles_token(
    procs: Procs, server: str, tmp_path
) -> None:
    host, info = start_host(procs, tmp_path, server, "--guess-limit", "4")
    shell_ready(host)
    for _ in range(4):  # three free guesses, then one after a 1 s delay
        bad = procs.start(wrong_token(info))
        assert bad.exit_code() == 6
    host.expect("new read-write token")
    fresh = json.loads(open(info["_path"]).read())
    assert fresh["join_token"] != info["join_token"]
    assert fresh["view_token"] == info["view_token"]  # the view-only secret had no guesses
    assert fresh["session"] == info["session"]
    old = start_join(procs, info)  # the right token, before the rotation: now refused
    old.expect("the join token is wrong")
    assert old.exit_code() == 6
    new = start_join(procs, fresh)  # after the delay its role's wrong guesses earned
    shell_ready(new)
    new.send("exit 5\r")
    assert new.exit_code() == 5
    assert host.exit_code() == 5


def test_guess_limit_can_stop_accepting(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(
        procs, tmp_path, server, "--on-guess-limit", "stop", "--guess-limit", "3"
    )
    shell_ready(host)
    for _ in range(3):
        assert procs.start(wrong_token(info)).exit_code() == 6
    host.expect("no longer accepting joiners")
    good = start_join(procs, info)
    good.expect("no longer accepts joiners")
    assert good.exit_code() == 7
    host.send("exit\r")
    assert host.exit_code() == 0


def test_server_rate_limits_join_attempts(procs: Procs, tmp_path) -> None:
    srv = procs.start([BEACH, "serve", "--host", "127.0.0.1", "--port", "0", "--join-rate", "3"])
    srv.expect(r"listening on (ws://\S+)")
    url = srv.child.match.group(1)
    host, info = start_host(procs, tmp_path, url)
    shell_ready(host)
    for _ in range(3):
        assert procs.start(wrong_token(info)).exit_code() == 6
    limited = start_join(procs, info)
    limited.expect("too many join attempts")
    assert limited.exit_code() == 7
    host.send("exit\r")
    assert host.exit_code() == 0


# -- roles and consent ----------------------------------------------------------------------------

RECORDER = (
    "import os, sys, tty\n"
    "tty.setraw(0)\n"
    "print('recorder-ready', flush=True)\n"
    "seen = b''\n"
    "while b'END' not in seen:\n"
    "    seen += os.read(0, 1024)\n"
    "print(seen, flush=True)\n"
)


def test_view_only_input_never_reaches_the_pty(procs: Procs, server: str, tmp_path) -> None:
    """beach's own viewer sends none of it (test_hostile_joiner.py has a crafted viewer that
    does, and the host dropping it)."""
    log = tmp_path / "host.log"
    log.touch()
    host, info = start_host(
        procs,
        tmp_path,
        server,
        command=["python3", "-c", RECORDER],
        global_opts=("--log-file", str(log), "--log-level", "info"),
    )
    host.expect("recorder-ready")
    rw = start_join(procs, info)
    rw.expect("recorder-ready")
    viewer = start_join(procs, info, key="view_join_command")
    viewer.expect("recorder-ready")
    viewer.send("VIEWER")
    viewer.expect("view-only")  # told, at once, by its own joiner
    rw.send("WRITER-END")
    for p in (host, rw, viewer):
        p.expect("WRITER-END")
    assert host.exit_code() == 0
    assert viewer.exit_code() == 0
    assert "VIEWER" not in host.transcript.getvalue()
    assert "dropping input" not in log.read_text()  # never even sent
    # Nothing the viewer typed reached the shared program, at any time (the whole transcripts).
    for p in (host, rw, viewer):
        assert "VIEWER" not in p.transcript.getvalue()


def test_approve_allow_and_deny(procs: Procs, server: str, tmp_path) -> None:
    host, info = start_host(procs, tmp_path, server, "--approve")
    shell_ready(host)
    allowed = start_join(procs, info)
    allowed.expect("waiting for the host to let you in")
    host.expect(r"read-write joiner wants to join. Let in\? \[y/N\]")
    host.expect(r"peer \w+ at .* \(as reported by the server\)")
    host.send("x")  # not an answer, and never typed into the shell
    host.send("y")
    shell_ready(allowed)
    allowed.send("echo approved-$((6*6))\r")
    for p in (host, allowed):
        p.expect("approved-36")  # a stray "x" would have made this "xecho: command not found"

    denied = start_join(procs, info, key="view_join_command")
    denied.expect("waiting for the host to let you in")
    host.expect(r"view-only joiner wants to join. Let in\? \[y/N\]")
    host.send("n")
    denied.expect("the host did not let you in")
    assert denied.exit_code() == 7
    allowed.send("exit 2\r")
    assert allowed.exit_code() == 2
    assert host.exit_code() == 2
