"""Fuzzing a running `beach serve` while a real session runs through it.

One real server (`beach serve` as a subprocess, its stderr captured line by line) carries one
real session for the whole module: `beach host` running bash and a `beach join`, both in
pseudo-terminals. Beside it, the tests throw at the same server:

- hypothesis-generated signaling messages over real WebSockets (valid types with fields of the
  wrong type, random objects, any JSON value, unicode, huge strings, huge numbers, deep nesting,
  non-JSON text), from four kinds of connection: a fresh one, the host of a fuzz session, a
  joiner of that session, and a joiner of the *real* session (so the real `beach host` gets
  garbage key-plane payloads too);
- raw WebSocket frames on raw TCP: random bytes as text frames, binary frames, frames over
  64 KiB, fragments, control and reserved opcodes, lying lengths, connections closed mid-frame;
- invalid HTTP (random bytes, mutated upgrade requests, oversized lines and headers);
- half-open connections: partial upgrades left stalled, upgraded sockets that never read,
  a joiner that stops reading while its host floods it, resets mid-handshake and mid-frame.

After each test: the server process is alive, `/healthz` answers 200 `ok`, its stderr has no
traceback, the host and joiner printed none either, a command typed at the joiner shows its
output at the host, and a brand-new joiner gets in and works.

What the fuzzing found is pinned at the end. Fixed since (regression tests): a relayed message
that outgrew 64 KiB (a traceback per message), tracebacks logged for malformed HTTP, a 500 for
bad bytes in an upgrade header, a connection writer that lost its cancellation (leaked
handlers, a 60 s SIGTERM), a host whose signaling loop died on the first server message it
did not understand, and stalled half-requests that exhausted a 1024-descriptor limit and locked
everyone out (now closed after the header timeout, and capped per address).

Every await is bounded by a timeout; hypothesis runs a fixed, derandomized number of examples.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Proc, Procs, shell_ready, start_host, start_join
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from serve_process import ServeProcess
from spake2 import SPAKE2_A

from beach_cli.errors import ProtocolError
from beach_cli.wire import signaling
from beach_cli.wire.signaling import (
    E_BAD_MESSAGE,
    E_UNKNOWN_PEER,
    MAX_MESSAGE_BYTES,
    parse_server_message,
)

T = 5.0  # seconds allowed for any single network step
ERROR_CODES = {value for name, value in vars(signaling).items() if name.startswith("E_")}
# The fuzzers and the real session all come from 127.0.0.1. Without generous limits the
# fuzzers' join attempts would (by design) lock the real joiners out for a minute, and the
# per-connection message rate would refuse most fuzz messages before any handler saw them, and
# the fuzzers' stalled half-requests would use up the address's unfinished-upgrade allowance.
SERVE_ARGS = (
    *("--host", "127.0.0.1", "--port", "0"),
    *("--join-rate", "1000000", "--max-message-rate", "1000000"),
    *("--max-sessions-per-address", "1000000", "--max-pending-per-address", "1000000"),
)

FUZZ_SETTINGS = settings(
    derandomize=True,  # the same examples every run: a failure is reproducible
    database=None,
    deadline=None,  # per-example time is bounded by the network timeouts instead
    phases=(Phase.explicit, Phase.generate),  # no shrinking: bounded time even on failure
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


# ---------------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Fuzz connections
# ---------------------------------------------------------------------------------------------

BARRIER = "zz-barrier-"  # an unknown message type: the server always answers it with an error


class Conn:
    """A fuzz WebSocket. A background reader validates everything the server sends (it must
    always be a valid server message) and queues it; `barrier()` returns everything the server
    answered to what was sent before it, in order, without waiting on a guess."""

    _barriers = 0

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, violations: list[str]) -> None:
        self.ws = ws
        self.violations = violations
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed = False
        self.session: str | None = None
        self.peer: str | None = None
        self.used = False  # a "fresh" connection that registered or joined is fresh no more
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, violations: list[str]) -> Conn:
        ws = await asyncio.wait_for(http.ws_connect(url, heartbeat=None), T)
        conn = cls(ws, violations)
        welcome = await conn.next()
        assert welcome is not None and welcome["type"] == "welcome", welcome
        return conn

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        parsed = parse_server_message(msg.data)
                    except ProtocolError as exc:
                        self.violations.append(f"invalid server message {msg.data[:300]!r}: {exc}")
                        continue
                    if parsed["type"] == "error" and parsed["code"] not in ERROR_CODES:
                        self.violations.append(f"unknown error code in {msg.data[:300]!r}")
                    self.queue.put_nowait(parsed)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.violations.append(f"binary message from the server: {msg.data[:50]!r}")
                else:  # close, closing, closed, error
                    break
        finally:
            self.closed = True
            self.queue.put_nowait(None)

    async def next(self, timeout: float = T) -> dict[str, Any] | None:
        """The next message, or None once the connection is closed."""
        if self.closed and self.queue.empty():
            return None
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def expect(self, mtype: str) -> dict[str, Any]:
        while True:
            msg = await self.next()
            assert msg is not None, f"connection closed while waiting for {mtype}"
            if msg["type"] == mtype:
                return msg

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while not self.queue.empty():
            msg = self.queue.get_nowait()
            if msg is not None:
                out.append(msg)
        if self.closed:
            self.queue.put_nowait(None)  # keep the end-of-stream marker for `next`
        return out

    async def send(self, text: str) -> bool:
        if self.closed or self.ws.closed:
            return False
        try:
            await asyncio.wait_for(self.ws.send_str(text), T)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            return False
        return True

    async def barrier(self) -> list[dict[str, Any]] | None:
        """Everything answered so far; None if the server closed the connection."""
        Conn._barriers += 1
        tag = f"{BARRIER}{Conn._barriers}"
        if not await self.send(json.dumps({"type": tag, "v": 1})):
            self.drain()
            return None
        got: list[dict[str, Any]] = []
        while True:
            msg = await self.next()
            if msg is None:
                return None
            if msg["type"] == "error" and f"'{tag}'" in msg["message"]:
                return got
            got.append(msg)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), T)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client WebSocket frame; `length` lies about the payload size when given."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 15)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, mask_bit | n))
    elif n < 1 << 16:
        head = bytes((b0, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, mask_bit | 127)) + struct.pack("!Q", n)
    if masked:
        key = os.urandom(4)
        payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        head += key
    return head + payload


def upgrade_request(path: str = "/ws") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class Raw:
    """A raw TCP connection to the server (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r = reader
        self.w = writer

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> Raw:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), T
            )
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    @classmethod
    async def websocket(cls, port: int, rcvbuf: int | None = None) -> Raw:
        """Upgraded, welcome read."""
        raw = await cls.connect(port, rcvbuf)
        await raw.write(upgrade_request())
        head = await asyncio.wait_for(raw.r.readuntil(b"\r\n\r\n"), T)
        assert head.startswith(b"HTTP/1.1 101 "), head
        welcome = await raw.read_frame()
        assert welcome is not None and b'"welcome"' in welcome[1], welcome
        return raw

    async def write(self, data: bytes) -> bool:
        try:
            self.w.write(data)
            await asyncio.wait_for(self.w.drain(), T)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def read_frame(self, timeout: float = T) -> tuple[int, bytes] | None:
        """One (unmasked) server frame as (opcode, payload); None at EOF or reset."""
        try:
            head = await asyncio.wait_for(self.r.readexactly(2), timeout)
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await asyncio.wait_for(self.r.readexactly(2), timeout))[0]
            elif n == 127:
                n = struct.unpack("!Q", await asyncio.wait_for(self.r.readexactly(8), timeout))[0]
            body = await asyncio.wait_for(self.r.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return head[0] & 0x0F, body

    async def read_to_eof(self, timeout: float = T, limit: int = 1 << 20) -> bytes:
        """Everything until the server closes; fails if it does not within `timeout`."""
        data = b""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionError):
            while len(data) < limit:
                chunk = await asyncio.wait_for(self.r.read(65536), deadline - time.monotonic())
                if not chunk:
                    break
                data += chunk
        return data

    def finish_writing(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.w.write_eof()

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        sock = self.w.get_extra_info("socket")
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.w.transport.abort()

    def close(self) -> None:
        self.w.transport.abort()


# ---------------------------------------------------------------------------------------------
# The arena: server, real session, fuzz connections
# ---------------------------------------------------------------------------------------------


@dataclass
class Arena:
    serve: ServeProcess
    procs: Procs
    host: Proc
    joiner: Proc
    info_path: Path
    runner: asyncio.Runner
    http: aiohttp.ClientSession | None = None
    violations: list[str] = field(default_factory=list)
    slots: dict[str, Conn] = field(default_factory=dict)
    checks: int = 0
    replies: Counter[str] = field(default_factory=Counter)

    # -- plumbing ------------------------------------------------------------------------------

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return self.runner.run(asyncio.wait_for(coro, timeout))

    @property
    def info(self) -> dict[str, Any]:
        """The host's current info file (a token changes after too many wrong guesses)."""
        data = json.loads(self.info_path.read_text())
        data["_path"] = str(self.info_path)
        return data

    @property
    def real_session(self) -> str:
        return self.info["session"]

    async def open(self) -> Conn:
        if self.http is None:
            self.http = aiohttp.ClientSession()
        return await Conn.open(self.http, self.serve.url, self.violations)

    async def health(self) -> dict[str, Any]:
        if self.http is None:
            self.http = aiohttp.ClientSession()
        url = f"http://127.0.0.1:{self.serve.port}/healthz"
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=T)) as resp:
            assert resp.status == 200, resp.status
            return await resp.json()

    # -- the four kinds of fuzz connection -------------------------------------------------------

    async def _host(self) -> Conn:
        conn = await self.open()
        assert await conn.send(json.dumps({"type": "host", "v": 1}))
        reg = await conn.expect("registered")
        conn.session = reg["session"]
        return conn

    async def _join(self, session: str, host: Conn | None) -> Conn:
        conn = await self.open()
        assert await conn.send(json.dumps({"type": "join", "v": 1, "session": session}))
        joined = await conn.expect("joined")
        conn.session, conn.peer = session, joined["peer"]
        if host is not None:
            await host.expect("peer_joined")
        return conn

    async def ensure_slots(self) -> None:
        """(Re)open whatever the last example closed or used up."""
        s = self.slots
        for name, conn in s.items():
            for got in conn.drain():  # what arrived since (the real host's answers, say)
                self.replies[
                    f"{got['type']} {got.get('code', '')} to {name}".replace("  ", " ")
                ] += 1
        if "fresh" not in s or s["fresh"].closed or s["fresh"].used:
            if "fresh" in s:
                await s["fresh"].close()
            s["fresh"] = await self.open()
        if "fhost" not in s or s["fhost"].closed:
            if "fhost" in s:
                await s["fhost"].close()
            s["fhost"] = await self._host()
        fhost = s["fhost"]
        fhost.drain()
        if "fpeer" not in s or s["fpeer"].closed or s["fpeer"].session != fhost.session:
            if "fpeer" in s:
                await s["fpeer"].close()
            assert fhost.session is not None
            s["fpeer"] = await self._join(fhost.session, fhost)
        if "rpeer" not in s or s["rpeer"].closed:
            if "rpeer" in s:
                await s["rpeer"].close()
            s["rpeer"] = await self._join(self.real_session, None)

    def ids(self) -> dict[str, str]:
        """Placeholders the strategies use for ids that exist only at run time."""
        s = self.slots
        return {
            "@real": self.real_session,
            "@fsid": s["fhost"].session or "x",
            "@fpeer": s["fpeer"].peer or "x",
            "@rpeer": s["rpeer"].peer or "x",
        }

    async def fuzz_message(self, slot: str, msg: Msg) -> None:
        await self.ensure_slots()
        conn = self.slots[slot]
        text = msg.build(self.ids())
        if await conn.send(text):
            replies = await conn.barrier()
            if replies is None:
                self.replies["(closed by the server)"] += 1
            for reply in replies or ():
                self.replies[f"{reply['type']} {reply.get('code', '')}".strip()] += 1
                if slot == "fresh" and reply["type"] in ("registered", "joined"):
                    conn.used = True
        for name, other in self.slots.items():
            for got in other.drain():  # relayed to (or said to) the other fuzz connections
                self.replies[
                    f"{got['type']} {got.get('code', '')} to {name}".replace("  ", " ")
                ] += 1

    async def close_slots(self) -> None:
        for conn in self.slots.values():
            await conn.close()
        self.slots.clear()

    # -- the checks after every test -------------------------------------------------------------

    def check(self, since: int, tag: str) -> None:
        """The server is alive and healthy, logged no unexpected traceback, the real session
        still works and a new joiner gets in."""
        self.checks += 1
        n = self.checks
        assert self.serve.alive, f"beach serve died:\n{self.serve.stderr()[-5000:]}"
        health = self.run(self.health())
        assert health["status"] == "ok", health
        assert not self.violations, self.violations[:10]

        # The real session: typed at the joiner, the shell's output shows at the host.
        self.joiner.send(f"echo {tag}-$(({n}*7919))\r")
        self.host.expect(f"{tag}-{n * 7919}")
        self.joiner.expect(f"{tag}-{n * 7919}")

        # A new joiner gets in, sees the shared shell and can type into it.
        newbie = start_join(self.procs, self.info, cols=100, rows=30)
        newbie.expect(f"{tag}-{n * 7919}")  # the current screen, from the snapshot
        newbie.send(f"echo new-{tag}-$(({n}*104729))\r")
        for p in (self.host, self.joiner, newbie):
            p.expect(f"new-{tag}-{n * 104729}")
        newbie.send("\x1dd")  # Ctrl-] d: detach
        newbie.expect("detached")
        assert newbie.exit_code() == 0
        for p in (self.host, self.joiner, newbie):
            assert "Traceback" not in p.transcript.getvalue(), p.transcript.getvalue()[-3000:]

        tracebacks = self.serve.tracebacks(since)
        assert not tracebacks, "\n\n".join(tracebacks[:5])


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    serve = ServeProcess(*SERVE_ARGS)
    procs = Procs()
    runner = asyncio.Runner()
    tmp = tmp_path_factory.mktemp("fuzz")
    arena: Arena | None = None
    try:
        host, info = start_host(procs, tmp, serve.url)
        shell_ready(host)
        joiner = start_join(procs, info)
        shell_ready(joiner)
        arena = Arena(serve, procs, host, joiner, Path(info["_path"]), runner)
        yield arena
    finally:
        if arena is not None:
            with contextlib.suppress(Exception):
                arena.run(arena.close_slots(), 20)
            if arena.http is not None:
                with contextlib.suppress(Exception):
                    arena.run(arena.http.close(), 10)
        runner.close()
        procs.close()
        if not serve.stop():
            # See test_writer_stops_when_stopped_right_after_a_send: handlers stuck for good.
            print("beach serve did not exit within 5 s of SIGTERM; killed")


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

ID_PLACEHOLDERS = ("@real", "@fsid", "@fpeer", "@rpeer")
TYPES = tuple(signaling.CLIENT_MESSAGES)
FIELDS = tuple(sorted({f for spec in signaling.CLIENT_MESSAGES.values() for f in spec}))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),  # NaN and infinities included: Python's JSON reads and writes them
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
huge_strings = st.builds(
    lambda ch, n: ch * n,
    st.sampled_from(["a", "é", "\x7f", "😀", "\u2028", '"', "\\", "\x00", "\ud800"]),
    st.sampled_from([0, 200, 5_000, 21_000, 30_000, 65_000, 70_000]),
)
ids = st.one_of(
    st.sampled_from((*ID_PLACEHOLDERS, "host")),
    st.from_regex(r"[a-z0-9]{1,32}", fullmatch=True),
    st.text(max_size=40),
)
spake_m = st.one_of(
    st.binary(min_size=33, max_size=33).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b"A" + b).decode()),
    st.binary(min_size=8, max_size=8).map(
        lambda pw: base64.b64encode(SPAKE2_A(pw, idA=b"a", idB=b"b").start()).decode()
    ),
    st.text(max_size=250),
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"k": st.sampled_from(["pake", "confirm", "sealed", "reject", "probe"])},
        optional={
            "m": spake_m,
            "role": st.sampled_from(["rw", "view", "admin"]) | json_values,
            "mac": st.text(max_size=120) | json_values,
            "n": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
            "c": st.text(max_size=100) | huge_strings,
            "reason": st.text(max_size=300),
        },
    ),
)
field_values = st.one_of(ids, json_values, huge_strings, payloads)


real_ids = st.sampled_from(("host", "host", "host", *ID_PLACEHOLDERS)) | st.from_regex(
    r"[a-z0-9]{1,32}", fullmatch=True
)
valid_messages = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("signal"), "v": st.just(1), "to": real_ids, "data": payloads}
    ).filter(lambda m: isinstance(m["data"], dict)),
    st.fixed_dictionaries(
        {
            "type": st.just("relay"),
            "v": st.just(1),
            "to": real_ids,
            "data": st.text(max_size=200) | huge_strings.filter(lambda t: len(t) < 64_000),
        }
    ),
    st.fixed_dictionaries({"type": st.just("join"), "v": st.just(1), "session": real_ids}),
    st.fixed_dictionaries(
        {"type": st.just("host"), "v": st.just(1)},
        optional={"session": real_ids, "reclaim": st.text(min_size=0, max_size=64)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("drop"), "v": st.just(1), "peer": real_ids},
        optional={"reason": st.text(max_size=200)},
    ),
)


def nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


class Msg:
    """A message to send: `template` (placeholders for run-time ids) encoded as JSON, or
    `text` sent as is; its repr is what hypothesis prints for a failing example."""

    def __init__(
        self,
        template: Any = None,
        text: str | None = None,
        ensure_ascii: bool = True,
        cut: int = 0,
    ) -> None:
        self.template = template
        self.text = text
        self.ensure_ascii = ensure_ascii
        self.cut = cut

    def build(self, ids_: dict[str, str]) -> str:
        if self.text is not None:
            # A text frame must be UTF-8: lone surrogates go as their escapes (raw invalid
            # UTF-8 is test_fuzz_raw_websocket_frames' business).
            text = self.text.encode(errors="backslashreplace").decode()
            return _subst_text(text, ids_)
        text = json.dumps(_subst(self.template, ids_), ensure_ascii=self.ensure_ascii)
        if not self.ensure_ascii:
            try:
                text.encode()
            except UnicodeEncodeError:  # lone surrogates cannot go on the wire unescaped
                text = json.dumps(_subst(self.template, ids_))
        return text[: -self.cut] if self.cut else text

    def __repr__(self) -> str:
        shown = repr(self.text if self.text is not None else self.template)
        if len(shown) > 300:
            shown = f"{shown[:300]}... ({len(shown)} chars)"
        return f"Msg({shown}, ensure_ascii={self.ensure_ascii}, cut={self.cut})"


@st.composite
def messages(draw: st.DrawFn) -> Msg:
    kind = draw(
        st.sampled_from(
            ["valid"] * 3
            + ["to-host"] * 3
            + ["typed"] * 3
            + ["object", "any", "nested", "text", "bignum", "cut"]
        )
    )
    if kind == "valid":  # well-formed, between real ids: the handlers past validation
        return Msg(draw(valid_messages), ensure_ascii=draw(st.booleans()))
    if kind == "to-host":  # a joiner's key-plane payload (from rpeer: to the real host)
        data = draw(payloads.filter(lambda d: isinstance(d, dict)))
        return Msg({"type": "signal", "v": 1, "to": "host", "data": data})
    if kind == "nested":
        depth = draw(st.sampled_from([100, 900, 973, 974, 980, 5_000, 30_000]))
        shape = draw(st.sampled_from(["list", "dict"]))
        to = draw(st.sampled_from(["host", "@fpeer", "@rpeer"]))
        prefix = f'{{"type":"signal","v":1,"to":"{to}","data":{{"x":'
        return Msg(text=prefix + nested(depth, shape) + "}}")
    if kind == "bignum":
        digits = "9" * draw(st.sampled_from([4_000, 4_301, 20_000]))
        return Msg(text=f'{{"type":"signal","v":1,"to":"host","data":{{"n":{digits}}}}}')
    if kind == "text":  # not JSON at all, or JSON-ish fragments
        return Msg(
            text=draw(
                st.one_of(
                    st.text(max_size=200),
                    st.sampled_from(["", "null", "true", "0", "-0", "1e999", "NaN", "[]", "{"]),
                    huge_strings,
                )
            )
        )
    if kind == "object":
        template: Any = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=8))
    elif kind == "any":
        template = draw(json_values)
    else:  # typed or cut: a real message type, with fields of any type
        template = {
            "type": draw(st.sampled_from(TYPES) | st.text(max_size=10)),
            "v": draw(st.sampled_from([1, 1, 1, 0, 2, "1", 1.0, True, None, 2**64])),
        }
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
            template[name] = draw(field_values)
        if template["type"] == "signal" and draw(st.booleans()):
            template["data"] = draw(payloads)
        elif template["type"] == "relay" and draw(st.booleans()):
            template["data"] = draw(st.text(max_size=300) | huge_strings)
    cut = draw(st.integers(min_value=1, max_value=200)) if kind == "cut" else 0
    return Msg(template, ensure_ascii=draw(st.booleans()), cut=cut)


def _subst(value: Any, ids_: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids_.get(value, value)
    if isinstance(value, list):
        return [_subst(v, ids_) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v, ids_) for k, v in value.items()}
    return value


def _subst_text(text: str, ids_: dict[str, str]) -> str:
    for k, v in ids_.items():
        text = text.replace(k, v)
    return text


@st.composite
def frame_sequences(draw: st.DrawFn) -> tuple[bytes, str]:
    """Bytes to send after the upgrade, and how to end: 'barrier' (only after well-formed
    frames: the server must answer, or close), 'fin', 'rst' or 'stall'."""
    kind = draw(
        st.sampled_from(
            [
                "text-bytes",
                "text-json",
                "binary",
                "big",
                "fragments",
                "control",
                "reserved",
                "rsv",
                "unmasked",
                "lying-length",
                "truncated",
                "garbage",
            ]
        )
    )
    well_formed = kind in ("text-json", "binary", "control", "unmasked")
    if kind == "text-bytes":  # random bytes as a text frame: usually invalid UTF-8
        data = ws_frame(1, draw(st.binary(max_size=2000)))
    elif kind == "text-json":
        data = ws_frame(1, draw(st.text(max_size=300)).encode())
        well_formed = True
    elif kind == "binary":
        data = ws_frame(2, draw(st.binary(max_size=2000)))
    elif kind == "big":  # over 64 KiB in one frame
        size = draw(st.sampled_from([MAX_MESSAGE_BYTES + 1, 100_000, 300_000]))
        data = ws_frame(draw(st.sampled_from([1, 2])), b"x" * size)
    elif kind == "fragments":
        parts = draw(st.lists(st.binary(max_size=30_000), min_size=2, max_size=5))
        first = draw(st.sampled_from([0, 1, 2]))
        data = b"".join(
            ws_frame(first if i == 0 else 0, p, fin=i == len(parts) - 1)
            for i, p in enumerate(parts)
        )
    elif kind == "control":
        opcode = draw(st.sampled_from([8, 9, 10]))
        data = ws_frame(opcode, draw(st.binary(max_size=200)), fin=draw(st.booleans()))
    elif kind == "reserved":
        data = ws_frame(draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])), b"abc")
    elif kind == "rsv":
        data = ws_frame(1, b'{"type":"host","v":1}', rsv=draw(st.integers(1, 7)))
    elif kind == "unmasked":
        data = ws_frame(1, draw(st.text(max_size=100)).encode(), masked=False)
    elif kind == "lying-length":
        payload = draw(st.binary(max_size=200))
        length = draw(st.sampled_from([len(payload) + 1, 70_000, 2**31, 2**63 - 1]))
        data = ws_frame(1, payload, length=length)
    elif kind == "truncated":  # closed mid-frame
        full = ws_frame(1, b"y" * draw(st.sampled_from([10, 1000, 70_000])))
        data = full[: draw(st.integers(1, len(full) - 1))]
    else:
        data = draw(st.binary(min_size=1, max_size=300))
    if well_formed:
        ending = draw(st.sampled_from(["barrier", "barrier", "fin", "rst"]))
    else:
        ending = draw(st.sampled_from(["fin", "fin", "rst", "stall"]))
    return data, ending


VALID_GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "mutated", "mutated", "lines", "huge"]))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=2000)) + b"\r\n\r\n"
    if kind == "lines":
        lines = draw(st.lists(st.text(max_size=80), min_size=1, max_size=12))
        return ("\r\n".join(lines) + "\r\n\r\n").encode(errors="surrogatepass")
    if kind == "huge":
        what = draw(st.sampled_from(["path", "header", "count", "body"]))
        if what == "path":
            return b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        if what == "header":
            return b"GET /ws HTTP/1.1\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n"
        if what == "count":
            return b"GET /ws HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(300))
        return b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n" + b"z" * 5000
    data = bytearray(draw(st.sampled_from([upgrade_request(), VALID_GET])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "header"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            line = draw(
                st.sampled_from(
                    [
                        b"Transfer-Encoding: chunked\r\n",
                        b"Content-Length: -1\r\n",
                        b"Content-Length: 5\r\nContent-Length: 6\r\n",
                        b"Sec-WebSocket-Version: 8\r\n",
                        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=99"
                        b"\r\n",
                        b"Upgrade: h2c\r\n",
                        b"Connection: close, upgrade, keep-alive\r\n",
                        b" folded continuation\r\n",
                        b"\x00: \xff\r\n",
                    ]
                )
            )
            end = data.find(b"\r\n") + 2
            data[end:end] = line
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_fuzz_signaling_messages(arena: Arena) -> None:
    """Hypothesis-generated messages from fresh connections, a fuzz host, its joiner and a
    joiner of the real session: every answer is a valid server message, nothing hangs."""
    since = arena.serve.mark()
    sent = {"fresh": 0, "fhost": 0, "fpeer": 0, "rpeer": 0}
    started = time.monotonic()

    @settings(FUZZ_SETTINGS, max_examples=400)
    @given(slot=st.sampled_from(sorted(sent)), msg=messages())
    def fuzz(slot: str, msg: Msg) -> None:
        arena.run(arena.fuzz_message(slot, msg), timeout=30)
        sent[slot] += 1

    try:
        fuzz()
    finally:
        arena.run(arena.close_slots(), 30)
    elapsed = time.monotonic() - started
    print(f"fuzzed {sum(sent.values())} messages {sent} in {elapsed:.1f} s")
    print(f"answers: {dict(arena.replies.most_common())}")
    assert all(sent.values()), sent
    arena.check(since, "msgs")


@pytest.mark.e2e
def test_fuzz_raw_websocket_frames(arena: Arena) -> None:
    """Raw frames on raw TCP after a real upgrade: the server answers or closes, never hangs
    on a connection that has finished sending, and never dies."""
    since = arena.serve.mark()
    stalled: list[Raw] = []
    outcomes: dict[str, int] = {}

    async def one(data: bytes, ending: str) -> None:
        raw = await Raw.websocket(arena.serve.port)
        ok = await raw.write(data)
        if ending == "barrier" and ok:
            # A well-formed frame: the server answers our barrier after it, or has closed.
            ok = await raw.write(
                ws_frame(1, json.dumps({"type": f"{BARRIER}raw", "v": 1}).encode())
            )
            while ok:
                frame = await raw.read_frame()
                if frame is None or frame[0] == 8 or f"'{BARRIER}raw'".encode() in frame[1]:
                    break
            outcomes["answered"] = outcomes.get("answered", 0) + 1
            raw.close()
        elif ending == "stall" and len(stalled) < 16:
            stalled.append(raw)
            outcomes["stalled"] = outcomes.get("stalled", 0) + 1
        elif ending == "rst":
            raw.reset()
            outcomes["reset"] = outcomes.get("reset", 0) + 1
        else:
            # We are done sending: the server must close the connection, not keep it.
            raw.finish_writing()
            await raw.read_to_eof(T)
            raw.close()
            outcomes["closed"] = outcomes.get("closed", 0) + 1

    @settings(FUZZ_SETTINGS, max_examples=250)
    @given(frame_sequences())
    def fuzz(case: tuple[bytes, str]) -> None:
        arena.run(one(*case), timeout=30)

    started = time.monotonic()
    fuzz()
    # The stalled connections are still open: the server serves everyone else meanwhile.
    assert arena.run(arena.health())["status"] == "ok"
    for raw in stalled:
        raw.close()
    print(f"raw frames: {outcomes} in {time.monotonic() - started:.1f} s")
    arena.check(since, "frames")


@pytest.mark.e2e
def test_fuzz_invalid_http(arena: Arena) -> None:
    """Random and mutated HTTP requests: each gets an HTTP answer (or none), the server closes
    the connection once the client is done sending, and nothing is a 500."""
    since = arena.serve.mark()
    statuses: dict[str, int] = {}
    waited = 0

    async def one(request: bytes) -> None:
        nonlocal waited
        raw = await Raw.connect(arena.serve.port)
        await raw.write(request)
        try:  # most requests are complete: their answer comes at once
            first = await asyncio.wait_for(raw.r.read(65536), 0.5)
        except TimeoutError:  # the server waits for the rest of the request (a body, a line)
            first = b""
            waited += 1
        except ConnectionError:
            first = b""
        raw.finish_writing()
        answer = first + await raw.read_to_eof(T)  # done sending: the server must close
        raw.close()
        if answer:
            # aiohttp answers in the request's own version (a mutated request line may say
            # HTTP/0.9): any HTTP status line is an answer.
            assert re.match(rb"HTTP/\d\.\d ", answer), answer[:200]
            status = answer.split(b" ", 2)[1].decode(errors="replace")
        else:
            status = "none"
        statuses[status] = statuses.get(status, 0) + 1

    @settings(FUZZ_SETTINGS, max_examples=200)
    @given(http_requests())
    def fuzz(request: bytes) -> None:
        arena.run(one(request), timeout=30)

    fuzz()
    print(f"HTTP statuses: {statuses}, {waited} incomplete requests")
    assert "500" not in statuses, statuses
    arena.check(since, "http")


@pytest.mark.e2e
def test_half_open_connections(arena: Arena) -> None:
    """Partial upgrades that stall, upgraded sockets that never read or send, a joiner that
    stops reading while its host floods it, resets mid-handshake and mid-frame: the server
    keeps serving meanwhile, drops the non-reader, and gets its file descriptors back."""
    since = arena.serve.mark()
    base_fds = arena.serve.fds()
    base_rss = arena.serve.rss_kib()
    held: list[Raw] = []

    async def stall() -> None:
        # Half an upgrade request, then nothing (slowloris).
        for i in range(50):
            raw = await Raw.connect(arena.serve.port)
            request = upgrade_request()
            await raw.write(request[: 10 + i * 3 % (len(request) - 12)])
            held.append(raw)
        # Upgraded WebSockets that never read and never send.
        for _ in range(20):
            held.append(await Raw.websocket(arena.serve.port, rcvbuf=4096))
        # Resets: mid-request, right after the upgrade, mid-frame, mid-close.
        for cut in range(0, 120, 7):
            raw = await Raw.connect(arena.serve.port)
            await raw.write(upgrade_request()[:cut])
            raw.reset()
        for data in (b"", ws_frame(1, b"z" * 5000)[:2500], ws_frame(8, b"\x03\xe8")[:3]):
            raw = await Raw.websocket(arena.serve.port)
            await raw.write(data)
            raw.reset()

    arena.run(stall())

    async def flood() -> tuple[int, float]:
        """A joiner that never reads, with a small receive buffer, and a host that floods it
        with ~60 KB signals: the server must drop the joiner and tell the host."""
        fhost = await arena._host()
        assert fhost.session is not None
        sink = await Raw.websocket(arena.serve.port, rcvbuf=4096)
        join = {"type": "join", "v": 1, "session": fhost.session}
        await sink.write(ws_frame(1, json.dumps(join).encode()))
        peer = (await fhost.expect("peer_joined"))["peer"]
        held.append(sink)
        blob = base64.b64encode(os.urandom(45_000)).decode()
        big = json.dumps({"type": "signal", "v": 1, "to": peer, "data": {"c": blob}})
        started = time.monotonic()
        for sent in range(1, 1001):  # bounded: 60 MB at most
            assert await fhost.send(big)
            for msg in fhost.drain():
                if msg["type"] == "peer_left":
                    assert msg["peer"] == peer
                    await fhost.close()
                    return sent, time.monotonic() - started
                assert (msg["type"], msg.get("code")) == ("error", E_UNKNOWN_PEER), msg
        # Not dropped yet: the drop may still be on its way (the send timeout is 10 s).
        while True:
            msg = await fhost.next(15.0)
            assert msg is not None and msg["type"] in ("peer_left", "error"), msg
            if msg["type"] == "peer_left":
                await fhost.close()
                return sent, time.monotonic() - started

    sent, took = arena.run(flood(), timeout=60)
    print(f"the non-reading joiner was dropped after {sent} signals, {took:.1f} s")

    # With all that still open, the server serves the real session and a new joiner.
    during_fds = arena.serve.fds()
    arena.check(since, "halfopen")

    for raw in held:
        raw.close()

    async def fds_back() -> int:
        # No event tells us the server closed its end: poll /proc, at most 10 s.
        for _ in range(200):
            if arena.serve.fds() <= base_fds + 2:
                break
            await asyncio.sleep(0.05)
        return arena.serve.fds()

    after_fds = arena.run(fds_back(), 15)
    rss = arena.serve.rss_kib()
    print(
        f"server fds: {base_fds} before, {during_fds} while held, {after_fds} after; "
        f"RSS {base_rss} -> {rss} KiB"
    )
    assert after_fds <= base_fds + 2, (base_fds, during_fds, after_fds)
    assert arena.run(arena.health())["peers"] == 0
    assert rss - base_rss < 200 * 1024, (base_rss, rss)


# ---------------------------------------------------------------------------------------------
# What the fuzzing found: regressions for the bugs fixed since
# ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_relayed_message_that_grows_is_relayed_or_refused_cleanly(arena: Arena) -> None:
    """A joiner's message that is under 64 KiB as sent but not as the server re-encodes it:
    the server relays it intact (and the receiving client accepts it), or refuses it as a bad
    message that says why; either way without an internal error. Found by the fuzzing: the
    server re-encoded relays with ensure_ascii (a 1-byte \\x7f became 6 bytes) and with
    'from' + an 8-char peer id instead of 'to':'host' (+6 bytes); past 64 KiB signaling._encode
    raised ProtocolError into _dispatch's catch-all: an ERROR traceback per message, and
    'the server could not process that message' to the client."""
    since = arena.serve.mark()
    # 20 KB on the wire, ~120 KB if the server escapes each character as \u007f.
    grows = {"type": "signal", "v": 1, "to": "host", "data": {"c": "\x7f" * 20_000}}
    # 65,535 bytes: under the limit as sent, over it once '"to":"host"' becomes
    # '"from":"<8-char peer id>"' (6 bytes more).
    near: dict[str, Any] = {"type": "signal", "v": 1, "to": "host", "data": {"c": ""}}
    room = MAX_MESSAGE_BYTES - 1 - len(json.dumps(near, separators=(",", ":")))
    near["data"]["c"] = "A" * room
    # A relayed data-channel frame (server relay mode) grows the same way.
    relay = {"type": "relay", "v": 1, "to": "host", "data": "\x7f" * 20_000}
    cases = [grows, near, relay]

    async def go() -> tuple[str, list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]:
        fhost = await arena._host()
        assert fhost.session is not None
        peer = await arena._join(fhost.session, fhost)
        outcomes = []
        for msg in cases:
            text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
            assert len(text.encode()) < MAX_MESSAGE_BYTES
            assert await peer.send(text)
            answers = await peer.barrier() or []
            relayed = await fhost.barrier() or []  # queued to the host before this barrier
            outcomes.append((answers, relayed))
        await peer.close()
        await fhost.close()
        assert peer.peer is not None
        return peer.peer, outcomes

    peer_id, outcomes = arena.run(go())
    for msg, (answers, relayed) in zip(cases, outcomes, strict=True):
        refused_by_client = [v for v in arena.violations if "invalid server message" in v]
        assert answers or relayed, (
            f"{msg['type']} of {len(json.dumps(msg, separators=(',', ':')).encode())} bytes "
            "was neither refused by the server "
            f"nor relayed in a form the client accepts: {[v[-200:] for v in refused_by_client]}"
        )
        if relayed:  # relayed intact...
            assert answers == [], answers
            assert relayed == [{"type": msg["type"], "v": 1, "from": peer_id, "data": msg["data"]}]
        else:  # ...or refused, as a bad message, saying what is wrong
            assert [a["code"] for a in answers] == [E_BAD_MESSAGE], answers
            assert "could not process" not in answers[0]["message"], answers
    # Either way, no internal error in the server's log.
    tracebacks = arena.serve.tracebacks(since)
    assert not tracebacks, tracebacks[0]


@pytest.mark.e2e
def test_malformed_http_is_not_logged_as_a_traceback(arena: Arena) -> None:
    """Found by test_fuzz_invalid_http (60 tracebacks for 200 requests): aiohttp logs every
    malformed request at ERROR with a full traceback (web_protocol.py handle_error), and
    `beach serve` left the aiohttp.server logger at INFO (cli.py _setup_logging): anyone could
    write ~15 lines into the server's log per request."""
    since = arena.serve.mark()
    requests = (
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nX: " + b"b" * 10_000 + b"\r\n\r\n",
    )

    async def go() -> list[bytes]:
        answers = []
        for request in requests:
            raw = await Raw.connect(arena.serve.port)
            await raw.write(request)
            answers.append(await raw.read_to_eof(T))  # a 400 closes the connection
            raw.close()
        return answers

    for answer in arena.run(go()):
        assert answer.startswith(b"HTTP/1.0 400 ") or answer.startswith(b"HTTP/1.1 400 ")
    tracebacks = arena.serve.tracebacks(since)
    assert not tracebacks, tracebacks[0]


@pytest.mark.e2e
def test_bad_upgrade_header_is_a_400(arena: Arena) -> None:
    """Found by test_fuzz_invalid_http: server.py handle_ws called ws.can_prepare(request)
    unguarded; for a GET /ws whose Upgrade (or Connection) header holds non-UTF-8 bytes,
    aiohttp's _handshake builds HTTPBadRequest around the raw value and fails with
    UnicodeEncodeError: the client got a 500 and the log an ERROR traceback."""
    since = arena.serve.mark()
    request = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: \xff\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    async def go() -> bytes:
        raw = await Raw.connect(arena.serve.port)
        await raw.write(request)
        answer = await asyncio.wait_for(raw.r.readuntil(b"\r\n"), T)
        raw.close()
        return answer

    status = arena.run(go())
    tracebacks = arena.serve.tracebacks(since)
    assert status.startswith(b"HTTP/1.1 400 "), status
    assert not tracebacks, tracebacks[0]


class _InstantWebSocket:
    """Stands in for the aiohttp WebSocket: every send completes without suspending, as a
    small send on a healthy socket does."""

    async def send_str(self, text: str) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("steps", [0, 1, 2])
async def test_writer_stops_when_stopped_right_after_a_send(steps: int) -> None:
    """Found after the fuzz tests (`beach serve` needed 60.4 s to exit on SIGTERM: aiohttp's
    shutdown timeout, waiting for handlers stuck in Client.stop()). connection.py Client._drain
    sent with asyncio.wait_for(ws.send_str(...)); on Python 3.11 wait_for returns normally when
    the cancel from stop() lands just as the send completes (CPython gh-86296), so the writer
    went back to _outbox.get() and stop() awaited it forever: one leaked handler per such
    connection. Stepping the loop by hand makes the race deterministic."""
    from beach_cli.server.client import Client

    client = Client(_InstantWebSocket(), "127.0.0.1")  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the writer starts and waits for its first message
    client.send("one")
    for _ in range(steps):  # single loop steps, not a timed wait: where the cancel lands
        await asyncio.sleep(0)
    stop = asyncio.ensure_future(client.stop())
    done, _ = await asyncio.wait({stop}, timeout=1.0)
    stop.cancel()
    client._writer.cancel()  # free the stuck writer (a second cancel does reach it)
    assert done, "Client.stop() never returned: its writer lost the cancellation"


@pytest.mark.e2e
async def test_host_survives_a_server_message_it_does_not_understand(
    procs: Procs, tmp_path: Path
) -> None:
    """A stand-in server registers a real `beach host`, sends it one message it refuses, then
    introduces a joiner whose SPAKE2 message the host must answer. Found while checking what a
    relay the client refuses does: host.py _signaling_loop caught only ServerUnreachable, so one
    server message parse_server_message refused (an unknown field, as from a newer server)
    raised ProtocolError out of SignalingClient.recv and ended the loop for good: no error
    shown, no reconnect, and the host never answered another joiner."""
    from aiohttp import web

    from beach_cli.keys import KeyExchange

    answered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "welcome", "v": 1, "server": "stand-in", "ice_servers": []})
        async for msg in ws:
            data = json.loads(msg.data)
            if data["type"] != "host":
                answered.put_nowait(data)
                continue
            await ws.send_json(
                {"type": "registered", "v": 1, "session": "fz2fz2", "reclaim": "r" * 32}
            )
            await ws.send_json({"type": "peer_left", "v": 1, "peer": "zz", "future_field": 1})
            await ws.send_json({"type": "peer_joined", "v": 1, "peer": "pp2pp2pp", "addr": "x"})
            kx = KeyExchange("joiner", "fz2fz2", "pp2pp2pp", "rw", "whatever")
            await ws.send_json({"type": "signal", "v": 1, "from": "pp2pp2pp", "data": kx.start()})
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        await asyncio.wait_for(asyncio.to_thread(start_host, procs, tmp_path, url), 30)
        try:
            reply = await asyncio.wait_for(answered.get(), 5.0)  # ~20 ms when it works
        except TimeoutError:
            reply = None
        assert reply is not None, "the host never answered the joiner: its signaling loop died"
        assert reply["type"] == "signal" and reply["data"]["k"] == "pake", reply
    finally:
        procs.close()  # the host first: the stand-in's handler ends with its connection
        await asyncio.wait_for(runner.cleanup(), 10)


# ---------------------------------------------------------------------------------------------
# File descriptors: stalled half-requests against a production-like descriptor limit
# ---------------------------------------------------------------------------------------------

NOFILE = 1024  # the usual soft limit (systemd's default for services)


async def _hold_half_requests(port: int, count: int) -> list[Raw]:
    held = []
    for _ in range(count):
        raw = await Raw.connect(port)
        await raw.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        held.append(raw)
    return held


async def _healthz_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(
                    f"http://127.0.0.1:{port}/healthz",
                    timeout=aiohttp.ClientTimeout(total=min(2.0, remaining)),
                ) as resp:
                    if resp.status == 200:
                        return True
            # A refused or reset attempt returns at once: pace the retries.
            await asyncio.sleep(0.2)
    return False


@pytest.fixture
def small_serve() -> Iterator[ServeProcess]:
    serve = ServeProcess("--host", "127.0.0.1", "--port", "0", nofile=NOFILE)
    try:
        yield serve
    finally:
        serve.stop()


@pytest.mark.e2e
def test_server_recovers_when_stalled_clients_leave(small_serve: ServeProcess) -> None:
    since = small_serve.mark()

    async def go() -> bool:
        held = await _hold_half_requests(small_serve.port, NOFILE + 100)
        for raw in held:
            raw.close()
        return await _healthz_within(small_serve.port, 10)

    with asyncio.Runner() as runner:
        assert runner.run(asyncio.wait_for(go(), 60))
    assert small_serve.alive
    tracebacks = small_serve.tracebacks(since)
    assert not tracebacks, tracebacks[0]


@pytest.mark.e2e
def test_stalled_half_requests_do_not_lock_out_other_clients(small_serve: ServeProcess) -> None:
    async def go() -> bool:
        held = await _hold_half_requests(small_serve.port, NOFILE + 100)
        try:
            return await _healthz_within(small_serve.port, 5)
        finally:
            for raw in held:
                raw.close()

    with asyncio.Runner() as runner:
        assert runner.run(asyncio.wait_for(go(), 60)), "healthz unreachable while clients stall"
