"""The host's offer travels with its key exchange when nothing stands between the key and the
offer (host/handshake.py): a joiner built from beach's own modules looks at what arrives and
when, with the right token, a wrong one, and with `--approve`, where the offer must wait."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Procs, shell_ready, start_host, start_join
from loop_thread import LoopThread

from beach_cli.errors import SecurityError, WrongToken
from beach_cli.keys import KeyExchange, Token, parse_token
from beach_cli.link import rtc
from beach_cli.rendezvous import SignalingClient
from beach_cli.wire.frames import FRAME_VERSION, Frame, Hello, encode_hello
from beach_cli.wire.keyplane import R_WRONG_TOKEN, parse_payload, payload

pytestmark = pytest.mark.e2e
TIMEOUT = 20.0


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


async def introduced(sig: SignalingClient, token: Token) -> KeyExchange:
    """Joined through the server, our SPAKE2 message sent; nothing else said yet."""
    await sig.connect(TIMEOUT)
    await sig.send("join", session=token.session)
    msg = await sig.recv(TIMEOUT)
    assert msg["type"] == "joined", msg
    kx = KeyExchange("joiner", token.session, msg["peer"], token.role, token.secret)
    await sig.send("signal", to="host", data=kx.start())
    return kx


async def host_says(sig: SignalingClient, count: int) -> list[dict[str, Any]]:
    """The host's next `count` key-plane messages."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        msg = await sig.recv(TIMEOUT)
        if msg["type"] == "signal":
            got.append(parse_payload(msg["data"]))
    return got


async def offered_before_we_confirm(server: str, token: Token) -> tuple[list[str], str, bool]:
    """Read the host's first three messages without confirming; then confirm, join and answer
    in one flight, and greet on the channel. Returns the kinds, the sealed offer's SDP, and
    whether the host's HELLO came back."""
    sig = SignalingClient(server)
    greeted = asyncio.Event()

    def on_frame(kind: Frame, body: bytes) -> None:
        if kind == Frame.HELLO:
            greeted.set()

    link = rtc.PeerLink([], on_frame, name="early")
    try:
        kx = await introduced(sig, token)
        pake, confirm, sealed = await host_says(sig, 3)
        kx.finish(pake)
        kx.verify(confirm)
        assert sealed["k"] == "sealed", (pake, confirm, sealed)
        offer = kx.open(sealed)
        assert offer["t"] == "offer"
        answer = await link.accept_offer(offer["sdp"])
        for data in (
            kx.confirmation(),
            kx.seal({"t": "join", "resume": None}),
            kx.seal({"t": "answer", "sdp": answer}),
        ):
            await sig.send("signal", to="host", data=data)
        await link.wait_open(TIMEOUT)
        link.send(encode_hello(Hello(FRAME_VERSION, token.role, 80, 24, ())))
        async with asyncio.timeout(TIMEOUT):
            await greeted.wait()
        return [pake["k"], confirm["k"], sealed["k"]], offer["sdp"], greeted.is_set()
    finally:
        await link.close()
        await sig.close()


def test_the_offer_comes_with_the_key_exchange_and_the_answer_with_the_confirmation(
    procs: Procs, server: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    host, info = start_host(procs, tmp_path, server)
    shell_ready(host)
    token = parse_token(info["join_token"])
    kinds, sdp, greeted = loop_thread.call(offered_before_we_confirm(server, token))
    # Before we said anything but our SPAKE2 message, the host had sent its part, its
    # confirmation and its sealed offer (with the DTLS fingerprint the channel is checked by).
    assert kinds == ["pake", "confirm", "sealed"]
    assert "a=fingerprint:" in sdp
    assert greeted  # and confirmation, join and answer in one flight got us in
    host.send("exit\r")
    assert host.exit_code() == 0


async def wrong_guess(server: str, token: Token) -> type[Exception]:
    """A wrong secret: the host's confirmation fails, and its sealed offer cannot be opened."""
    wrong = Token(token.session, token.role, "x" * len(token.secret))
    sig = SignalingClient(server)
    try:
        kx = await introduced(sig, wrong)
        pake, confirm, sealed = await host_says(sig, 3)
        kx.finish(pake)
        with pytest.raises(WrongToken):
            kx.verify(confirm)
        try:
            kx.open(sealed)
        except SecurityError as exc:
            failed: type[Exception] = type(exc)
        else:
            raise AssertionError("a wrong token opened the host's offer")
        await sig.send("signal", to="host", data=payload("reject", reason=R_WRONG_TOKEN))
        return failed
    finally:
        await sig.close()


def sockets(pid: int) -> int:
    """The process's open sockets (one closed while they are counted is not one)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += "socket:" in os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return count


def test_a_wrong_token_gets_an_offer_it_cannot_open_and_the_host_closes_it(
    procs: Procs, server: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    log = tmp_path / "host.log"
    host, info = start_host(
        procs, tmp_path, server, global_opts=("--log-file", str(log), "--log-level", "debug")
    )
    shell_ready(host)
    token = parse_token(info["join_token"])
    pid = host.child.pid
    before = sockets(pid)
    for _ in range(3):  # within the free guesses: no waiting between them
        assert loop_thread.call(wrong_guess(server, token)) is SecurityError
    # Each attempt's peer connection (its ICE sockets) is closed once the attempt fails.
    deadline = time.monotonic() + TIMEOUT
    while log.read_text().count(": lost (closed)") < 3:
        assert time.monotonic() < deadline, log.read_text()
        host.read_for(0.05)
    # (logged as the close begins: the ICE sockets go as aiortc's close finishes)
    while (now := sockets(pid)) > before:
        assert time.monotonic() < deadline, f"{now} sockets, {before} before the guesses"
        host.read_for(0.05)
    assert log.read_text().count("with a wrong read-write token") == 3, log.read_text()
    # And the right token still gets in at once.
    good = start_join(procs, info)
    shell_ready(good)
    good.send("\x1dd")
    assert good.exit_code() == 0
    host.send("exit\r")
    assert host.exit_code() == 0


async def approval_first(server: str, token: Token) -> list[str]:
    """With --approve the host must not offer before a person decided: what it says before
    and right after our confirmation."""
    sig = SignalingClient(server)
    try:
        kx = await introduced(sig, token)
        pake, confirm = await host_says(sig, 2)
        kx.finish(pake)
        kx.verify(confirm)
        await sig.send("signal", to="host", data=kx.confirmation())
        await sig.send("signal", to="host", data=kx.seal({"t": "join", "resume": None}))
        (first,) = await host_says(sig, 1)
        return [pake["k"], confirm["k"], kx.open(first)["t"]]
    finally:
        await sig.close()


def test_with_approve_the_offer_waits_for_the_person(
    procs: Procs, server: str, tmp_path: Path, loop_thread: LoopThread
) -> None:
    host, info = start_host(procs, tmp_path, server, "--approve")
    shell_ready(host)
    said = loop_thread.call(approval_first(server, parse_token(info["join_token"])))
    assert said == ["pake", "confirm", "wait"]  # no offer went out ahead of the question
    host.expect(r"wants to join. Let in\? \[y/N\]")
    host.expect(r"\x1b\[\?1049l")  # our joiner left: the question is withdrawn
    host.send("exit\r")
    assert host.exit_code() == 0
