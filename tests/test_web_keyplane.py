"""The browser joiner's key plane and frame codec (web/src/*.js) in Node: its own tests, and
live against Python's: web/test/interop.mjs plays the joiner over JSON lines on stdin/stdout
against `KeyExchange("host", ...)` and the host's deflate `Encoder`. No beach process runs.

Node and web/node_modules (`cd web && npm ci`) are required under CI=true; elsewhere a
missing one skips."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need

from beach_cli.errors import BeachError, ProtocolError, SecurityError, WrongToken
from beach_cli.keys import KeyExchange, parse_token
from beach_cli.link.chunks import chunked
from beach_cli.link.relay import RELAY_CHUNK
from beach_cli.wire import compression
from beach_cli.wire.frames import MAX_CHUNK_BYTES, Frame, Hello, decode_hello, encode_hello
from beach_cli.wire.keyplane import HOLD_MAX, REJECT_REASONS, parse_payload

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
DEPENDENCIES = ("@noble/curves", "@noble/hashes", "@noble/ciphers", "fflate")
REPLY_TIMEOUT = 20.0  # seconds for one answer from Node (the machine may be busy)
SESSION, PEER, SECRET = "abc234", "p7", "xyz789"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def node_path() -> str:
    """Node with the page's locked dependencies installed: under CI both must be there."""
    node = need("node")
    missing = [d for d in DEPENDENCIES if not (WEB / "node_modules" / d).is_dir()]
    if missing:
        why = f"web/node_modules lacks {', '.join(missing)} (run `cd web && npm ci`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}: required in CI")
        pytest.skip(why)
    return node


class JsError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class NodeJoiner:
    """web/test/interop.mjs: one request per line, one answer per line, each with a timeout."""

    def __init__(self, node: str) -> None:
        self.proc = subprocess.Popen(
            [node, str(WEB / "test" / "interop.mjs"), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self._buf = b""

    def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        reply = json.loads(self._line())
        if "error" in reply:
            raise JsError(reply["error"]["kind"], reply["error"]["message"])
        return reply["ok"]

    def _line(self) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + REPLY_TIMEOUT
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from node within {REPLY_TIMEOUT} s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"node exited: {self._stderr()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _stderr(self) -> str:
        self.proc.kill()
        _, err = self.proc.communicate(timeout=5)
        return err.decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=5)


@pytest.fixture
def js() -> Iterator[NodeJoiner]:
    joiner = NodeJoiner(node_path())
    yield joiner
    joiner.close()


def handshake(
    js: NodeJoiner, role: str = "rw", secret: str = SECRET, host_secret: str = SECRET
) -> KeyExchange:
    """SPAKE2 between the JS joiner and a Python host, up to (not including) confirmation."""
    js.call("new", session=SESSION, peer=PEER, role=role, secret=secret)
    host = KeyExchange("host", SESSION, PEER, role, host_secret)  # type: ignore[arg-type]
    joiner_pake = js.call("start")
    assert parse_payload(joiner_pake) == joiner_pake and joiner_pake["role"] == role
    assert len(base64.b64decode(joiner_pake["m"])) == 33
    host_pake = host.start()
    host.finish(joiner_pake)
    js.call("finish", data=host_pake)
    return host


def test_a_page_that_starts_before_the_server_names_it_gets_the_same_key(js: NodeJoiner) -> None:
    # The page sends its SPAKE2 message with its join and learns its peer id afterwards.
    js.call("new", session=SESSION, peer="", role="rw", secret=SECRET)
    joiner_pake = js.call("start")
    js.call("introduced", peer=PEER)
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    host_pake = host.start()
    host.finish(joiner_pake)
    js.call("finish", data=host_pake)
    assert js.call("verify", data=host.confirmation()) is True
    host.verify(js.call("confirmation"))
    assert host.open(js.call("seal", message={"t": "join", "resume": None}))["t"] == "join"


def test_a_page_started_early_is_bound_to_the_peer_id_it_is_given(js: NodeJoiner) -> None:
    js.call("new", session=SESSION, peer="", role="rw", secret=SECRET)
    joiner_pake = js.call("start")
    js.call("introduced", peer="0ther9ee")  # not the peer id the host was told
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    host_pake = host.start()
    host.finish(joiner_pake)
    js.call("finish", data=host_pake)
    with pytest.raises(JsError) as caught:
        js.call("verify", data=host.confirmation())
    assert caught.value.kind == "wrong-token"


def confirmed(js: NodeJoiner) -> KeyExchange:
    host = handshake(js)
    assert js.call("verify", data=host.confirmation()) is True
    host.verify(js.call("confirmation"))
    return host


# ---------------------------------------------------------------------------------------------


def test_node_unit_tests() -> None:
    """web/test/*.test.mjs (SPAKE2 vectors, sealing, frames), as `node --test web/test/`."""
    node = node_path()
    run = subprocess.run(
        [node, "--test", "web/test/"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if run.returncode != 0:
        pytest.fail(f"node --test failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")


def test_live_exchange_with_the_python_host(js: NodeJoiner) -> None:
    host = confirmed(js)
    assert host.confirmed
    # sealed messages both ways, interleaved with relayed frames in the same sequences
    join = {"t": "join", "resume": None}
    assert host.open(js.call("seal", message=join)) == join
    offer = {"t": "offer", "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"}
    assert js.call("open", data=host.seal(offer)) == offer
    candidate = {
        "t": "candidate",
        "candidate": "candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    answer = {"t": "answer", "sdp": "v=0\r\ns=caf\u00e9 \u2500 \U0001f600\r\n"}  # non-ASCII
    assert host.open(js.call("seal", message=answer)) == answer
    assert host.open(js.call("seal", message=candidate)) == candidate
    for size in (0, 1, 100, RELAY_CHUNK + 9):
        frame = bytes([Frame.OUTPUT]) + os.urandom(size)
        assert host.open_frame(js.call("sealFrame", frame=_b64(frame))) == frame
        assert base64.b64decode(js.call("openFrame", text=host.seal_frame(frame))) == frame
    assert js.call("open", data=host.seal({"t": "wait"})) == {"t": "wait"}
    assert host.open(js.call("seal", message={"t": "relay"})) == {"t": "relay"}


@pytest.mark.parametrize(
    ("role", "secret", "host_secret"),
    [("rw", SECRET, "xyz788"), ("view", "abc", SECRET), ("rw", SECRET.upper(), SECRET)],
)
def test_a_wrong_secret_fails_both_verifies(
    js: NodeJoiner, role: str, secret: str, host_secret: str
) -> None:
    host = handshake(js, role, secret, host_secret)
    with pytest.raises(JsError) as caught:
        js.call("verify", data=host.confirmation())
    assert caught.value.kind == "wrong-token"
    assert caught.value.message == "the join token is wrong or no longer valid"
    with pytest.raises(WrongToken, match=caught.value.message):
        host.verify(js.call("confirmation"))
    with pytest.raises(JsError, match="security: nothing may be sealed"):
        js.call("seal", message={"t": "relay"})


def test_the_view_secret_cannot_claim_read_write(js: NodeJoiner) -> None:
    """The role is part of the password: a joiner claiming rw with the view secret fails."""
    js.call("new", session=SESSION, peer=PEER, role="rw", secret=SECRET)
    host = KeyExchange("host", SESSION, PEER, "view", SECRET)
    host_pake = host.start()
    host.finish(js.call("start"))
    js.call("finish", data=host_pake)
    with pytest.raises(JsError, match="wrong-token"):
        js.call("verify", data=host.confirmation())


def test_tampered_and_replayed_messages_are_refused_both_ways(js: NodeJoiner) -> None:
    host = confirmed(js)
    first, second = host.seal({"t": "wait"}), host.seal({"t": "relay"})
    cipher = bytearray(base64.b64decode(first["c"]))
    cipher[0] ^= 1
    with pytest.raises(JsError, match="security: a sealed message failed authentication"):
        js.call("open", data={**first, "c": _b64(bytes(cipher))})
    assert js.call("open", data=second) == {"t": "relay"}
    for old in (second, first):  # replayed, and reordered behind a later one
        with pytest.raises(JsError, match="security: a sealed message was replayed"):
            js.call("open", data=old)
    frame = host.seal_frame(b"\x02late")
    assert base64.b64decode(js.call("openFrame", text=frame)) == b"\x02late"
    with pytest.raises(JsError, match="replayed"):
        js.call("openFrame", text=frame)

    sealed = js.call("seal", message={"t": "relay"})
    raw = bytearray(base64.b64decode(sealed["c"]))
    raw[-1] ^= 0x40
    with pytest.raises(SecurityError, match="failed authentication"):
        host.open({**sealed, "c": _b64(bytes(raw))})
    assert host.open(sealed) == {"t": "relay"}
    with pytest.raises(SecurityError, match="replayed"):
        host.open(sealed)
    text = js.call("sealFrame", frame=_b64(b"\x03keys"))
    with pytest.raises(SecurityError, match="failed authentication"):
        host.open_frame(text[:-4] + ("AAAA" if text[-4:] != "AAAA" else "BBBB"))


def _frames(kind: Frame, body: bytes) -> list[bytes]:
    """The bodies of the frames the host sends for one stream body (link/chunks.py)."""
    return [frame[1:] for frame in chunked(kind, body, MAX_CHUNK_BYTES)]


def _screen(lines: int, seed: int) -> bytes:
    text = "".join(
        f"\x1b[{(i * seed) % 50};1H\x1b[3{i % 8}mrow {i * seed:>6} {'é─漢' * (i % 5)}\r\n"
        for i in range(lines)
    )
    return text.encode() + os.urandom(seed * 10)


def test_deflate_units_from_the_python_encoder_inflate_in_js(js: NodeJoiner) -> None:
    enc = compression.Encoder()
    js.call("inflater")
    # a unit per frame: each frame's output is exactly its input, nothing held back
    for chunk in (b"$ ", b"ls\r\n", _screen(40, 3), b"", _screen(900, 7), b"\x1b[?1049h"):
        got = js.call("inflate", body=_b64(enc.unit(chunk)))
        assert base64.b64decode(got["data"]) == chunk
    # units queued together, then cut into frames (and again for the relay) at odd places
    chunks = [_screen(n, n % 13 + 1) for n in (1, 17, 300, 2500, 5)]
    stream = b"".join(enc.unit(c) for c in chunks)
    out = b""
    for body in _frames(Frame.OUTPUT, stream):
        for piece in chunked(Frame.OUTPUT, body, RELAY_CHUNK // 3 + 1):
            out += base64.b64decode(js.call("inflate", body=_b64(piece[1:]))["data"])
    assert out == b"".join(chunks)

    # a snapshot is a unit of its own, taken by a fresh inflater (after any garbage)
    js.call("inflate", body=_b64(enc.unit(b"before")[:4]))  # part of a unit, never finished
    snapshot = _screen(1200, 5)
    js.call("inflater")
    out = b"".join(
        base64.b64decode(js.call("inflate", body=_b64(b))["data"])
        for b in _frames(Frame.SNAPSHOT, compression.standalone(snapshot))
    )
    assert out == snapshot


def test_huffman_only_units_mixed_with_level_one_inflate_in_js(js: NodeJoiner) -> None:
    enc = compression.Encoder()
    js.call("inflater")
    noise = base64.b64encode(os.urandom(60_000))  # sends what follows Huffman-only
    chunks = [noise, _screen(300, 3), noise[:9_000], b"", _screen(40, 11)]
    units = [enc.unit(c) for c in chunks]
    assert enc.huffman_left > 0
    for chunk, unit in zip(chunks, units, strict=True):
        for body in _frames(Frame.OUTPUT, unit):
            got = js.call("inflate", body=_b64(body))
            assert base64.b64decode(got["data"]) == chunk


def test_bad_deflate_streams_are_refused_in_js(js: NodeJoiner) -> None:
    js.call("inflater")
    with pytest.raises(JsError, match="bad-output: bad deflate stream"):
        js.call("inflate", body=_b64(b"\xff\xfe\xfd\xfc"))
    js.call("inflater")
    z = compression.decoder()  # python's own verdict on the same bytes: the stream ends
    ended = zlib.compressobj(compression.LEVEL, zlib.DEFLATED, compression.WBITS)
    final = ended.compress(b"bye") + ended.flush()
    z.decompress(final)
    assert z.eof
    with pytest.raises(JsError, match="bad-output: the deflate stream ended"):
        js.call("inflate", body=_b64(final))
    js.call("inflater")
    bomb = compression.standalone(bytes(8 * 1024 * 1024 + 1))
    with pytest.raises(JsError, match="bad-output: a frame inflates past 8388608 bytes"):
        js.call("inflate", body=_b64(bomb))


# -- the same verdicts and words as python --------------------------------------------------------


def _python(fn: Any, *args: Any) -> Any:
    try:
        return {"ok": fn(*args)}
    except BeachError as exc:
        return {"error": exc.message}


def _javascript(js: NodeJoiner, op: str, **args: Any) -> Any:
    try:
        return {"ok": js.call(op, **args)}
    except JsError as exc:
        return {"error": exc.message}


B64_CASES = [
    "", "=", "==", "QQ", "QQ=", "QQ==", "QR==", "QUI=", "QUJD", "A", "ABCDE", "ABCDEF",
    "QQ==QQ==", "QUJD\n", " QUJD", "QUJD=", "QUJD===", "Q===", "QQ=a", "-_8=", "QUJDRA",
    "QUJDRA==", "QUJDRA=", "QUJD=QUJD", "Q=Q=", "QQ===", "QUI==", "=QUJD", "QUJ\u00c4",
    "QUJDQUJDQUJD=", "////", "+/+/", "AAAA" * 100 + "AA==",
]  # fmt: skip


def test_base64_accepts_and_refuses_what_python_does(js: NodeJoiner) -> None:
    def py(text: str) -> Any:
        try:
            return {"ok": _b64(base64.b64decode(text, validate=True))}
        except ValueError:
            return {"error": "bad base64 in signal payload"}

    for text in B64_CASES:
        assert _javascript(js, "b64decode", text=text) == py(text), repr(text)


TOKENS = [
    "abc234-xyz789", " ABC234-V-XYZ789\n", "abc", "a-b-c", "abc-x-def", "-abc", "abc-",
    "ab c-def", "abc-dé", "a" * 33 + "-b", "it's-x", "a\tb-c", 'say "hi"-x', "abc-v-",
]  # fmt: skip


def test_tokens_parse_with_pythons_words(js: NodeJoiner) -> None:
    for text in TOKENS:
        py = _python(lambda t: vars_of(parse_token(t)), text)
        assert _javascript(js, "parseToken", text=text) == py, repr(text)


def vars_of(token: Any) -> dict[str, str]:
    return {"session": token.session, "role": token.role, "secret": token.secret}


PAYLOAD_CASES: list[Any] = [
    {"k": "pake", "m": "QQ=="},
    {"k": "pake", "m": "QQ==", "role": "view"},
    {"k": "confirm", "mac": "x"},
    {"k": "sealed", "n": 3, "c": ""},
    {"k": "reject", "reason": "denied"},
    {"k": "hold", "s": 30},
    None, [], "pake", 5, {}, {"k": None}, {"k": True}, {"k": 7}, {"k": "nope" * 9},
    {"k": "pake"},
    {"k": "pake", "m": 5},
    {"k": "pake", "m": "x" * 201},
    {"k": "pake", "m": "\U0001f600" * 200},
    {"k": "pake", "m": "x", "role": "r" * 9},
    {"k": "pake", "m": "x", "zz": 1, "aa": 2, "mm": 3, "bb": 4, "cc": 5},
    {"k": "sealed", "n": 1.5, "c": ""},
    {"k": "sealed", "n": True, "c": ""},
    {"k": "sealed", "n": "1", "c": ""},
    {"k": "sealed", "n": 1, "c": None},
    {"k": "hold", "s": None},
    {"k": "confirm", "mac": ["x"]},
]  # fmt: skip


def test_payloads_are_checked_with_pythons_words(js: NodeJoiner) -> None:
    for data in PAYLOAD_CASES:
        assert _javascript(js, "parsePayload", data=data) == _python(parse_payload, data), data
    assert js.call("constants") == {"REJECT_REASONS": REJECT_REASONS, "HOLD_MAX": HOLD_MAX}


def test_json_and_hello_bytes_are_pythons(js: NodeJoiner) -> None:
    value = {"t": "offer", "sdp": 'a"b\\c\n\t\x01\x7f\u00e9\u2028\U0001f600', "n": [1, None, True]}
    assert js.call("pyJson", value=value, compact=True) == json.dumps(value, separators=(",", ":"))
    assert js.call("pyJson", value=value, compact=False) == json.dumps(value)
    for hello in (
        Hello(1, "rw", 80, 24, ("deflate",)),
        Hello(1, "view", 10000, 1, (), 12345, "0123456789abcdef" * 2),
    ):
        fields = {
            "version": hello.version,
            "role": hello.role,
            "cols": hello.cols,
            "rows": hello.rows,
            "features": list(hello.features),
            "applied": hello.applied,
            "resume": hello.resume,
        }
        assert base64.b64decode(js.call("encodeHello", hello=fields)) == encode_hello(hello)
        assert js.call("decodeHello", body=_b64(encode_hello(hello)[1:])) == fields
    good = {"v": 1, "role": "rw", "cols": 80, "rows": 24}
    for bad in (
        {**good, "v": "1"}, {**good, "role": 5}, {**good, "features": None},
        {**good, "cols": 0}, {**good, "rows": "24"}, {**good, "applied": -1},
        {**good, "applied": None}, {**good, "resume": "x"},
        {k: v for k, v in good.items() if k != "v"},
    ):  # fmt: skip
        body = json.dumps(bad).encode()
        js_verdict = _javascript(js, "decodeHello", body=_b64(body))
        with pytest.raises(ProtocolError) as caught:
            decode_hello(body)
        assert js_verdict == {"error": caught.value.message}, bad
