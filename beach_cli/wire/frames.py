"""Data-channel frames between host and joiner: one type byte, then the body. They travel over
the WebRTC data channel, or sealed through the server relay (link/relay.py).
"""

from __future__ import annotations

import json
import signal
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..errors import ProtocolError
from .fields import is_int, is_resume_id, json_object

# Data-channel protocol version, exchanged in HELLO frames.
FRAME_VERSION = 1
# aiortc refuses data-channel messages above 262,144 bytes; stay well below with room for the
# frame header and compression overhead.
MAX_FRAME_BYTES = 262_144
MAX_CHUNK_BYTES = 64 * 1024


class Frame(IntEnum):
    HELLO = 1  # JSON: {"v", "role", "cols", "rows", "features", "applied"?, "resume"?} both ways
    OUTPUT = 2  # terminal bytes, host -> joiner (zlib stream if negotiated)
    INPUT = 3  # u64 offset of the first byte in the joiner's input stream, then keystrokes
    RESIZE = 4  # u16 cols, u16 rows: joiner's window (->host) or the PTY size (->joiner)
    EXIT = 5  # JSON: {"code": int, "signal": int|null, "reason"?: str}
    PING = 6  # 8 opaque bytes, echoed in PONG
    PONG = 7
    NOTICE = 8  # UTF-8 text the joiner shows outside the shared screen
    SNAPSHOT = 9  # like OUTPUT, but starts a fresh screen (late join, resync)
    ACK = 10  # u64: the joiner's input up to this offset has reached the PTY
    # u64 offset, u8 flags (ECHO_*), host -> joiner, only with the "echo" feature: the joiner's
    # input before the offset reached the PTY at least ECHO_WAIT ago (host/stream.py), and
    # the output the program made of it came before this frame (predictive echo is judged
    # against it).
    # Joiner -> host, u8: 1 to be sent ECHOs from now on (it shows guesses), 0 to stop.
    ECHO = 11
    # Both ways, only on the relay of an early-relay join (link/handover.py): the last relayed
    # frame, the rest follow on the data channel; with the body b"relay", no channel is coming.
    HANDOVER = 12


_RESIZE = struct.Struct("!HH")
_OFFSET = struct.Struct("!Q")
_ECHO = struct.Struct("!QB")

ECHO_FEATURE = "echo"
ECHO_SECRET = 1  # the PTY is in canonical mode with echo off: a password prompt
ECHO_OTHERS = 2  # someone else's keystrokes reached the PTY since the previous ECHO


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    role: str
    cols: int
    rows: int
    features: tuple[str, ...]
    applied: int = 0  # host -> joiner: input offset already applied (on a resumed connection)
    resume: str | None = None  # host -> joiner: present this id to carry on after a reconnect


def encode_frame(kind: Frame, body: bytes = b"") -> bytes:
    frame = bytes((kind,)) + body
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("frame too large")
    return frame


def decode_frame(data: bytes | str) -> tuple[Frame, bytes]:
    if isinstance(data, str) or not data:
        raise ProtocolError("frames are non-empty binary messages")
    try:
        kind = Frame(data[0])
    except ValueError as exc:
        raise ProtocolError(f"unknown frame type {data[0]}") from exc
    return kind, bytes(data[1:])


def encode_hello(hello: Hello) -> bytes:
    body = {
        "v": hello.version,
        "role": hello.role,
        "cols": hello.cols,
        "rows": hello.rows,
        "features": list(hello.features),
        "applied": hello.applied,
        "resume": hello.resume,
    }
    return encode_frame(Frame.HELLO, json.dumps(body).encode())


def decode_hello(body: bytes) -> Hello:
    d = json_object(body, "hello")
    v, role, feats = d.get("v"), d.get("role"), d.get("features", [])
    if not is_int(v) or not isinstance(role, str) or not isinstance(feats, list):
        raise ProtocolError("malformed hello")
    cols, rows = _size(d.get("cols"), d.get("rows"))
    applied = d.get("applied", 0)
    resume = d.get("resume")
    if not is_int(applied) or not 0 <= applied < 2**63:
        raise ProtocolError("malformed hello")
    if not (resume is None or is_resume_id(resume)):
        raise ProtocolError("malformed hello")
    feats_ = tuple(str(f)[:32] for f in feats[:16])
    return Hello(v, role[:16], cols, rows, feats_, applied, resume)


def _size(cols: Any, rows: Any) -> tuple[int, int]:
    if not is_int(cols) or not is_int(rows):
        raise ProtocolError("window size must be integers")
    if not (1 <= cols <= 10_000 and 1 <= rows <= 10_000):
        raise ProtocolError("window size out of range")
    return cols, rows


def encode_resize(cols: int, rows: int) -> bytes:
    cols, rows = _size(cols, rows)
    return encode_frame(Frame.RESIZE, _RESIZE.pack(cols, rows))


def decode_resize(body: bytes) -> tuple[int, int]:
    if len(body) != _RESIZE.size:
        raise ProtocolError("malformed resize")
    return _size(*_RESIZE.unpack(body))


def encode_input(offset: int, data: bytes) -> bytes:
    return encode_frame(Frame.INPUT, _OFFSET.pack(offset) + data)


def decode_input(body: bytes) -> tuple[int, bytes]:
    if len(body) < _OFFSET.size:
        raise ProtocolError("malformed input frame")
    return _OFFSET.unpack_from(body)[0], body[_OFFSET.size :]


def encode_ack(offset: int) -> bytes:
    return encode_frame(Frame.ACK, _OFFSET.pack(offset))


def decode_ack(body: bytes) -> int:
    if len(body) != _OFFSET.size:
        raise ProtocolError("malformed ack frame")
    return _OFFSET.unpack(body)[0]


def encode_echo(offset: int, flags: int) -> bytes:
    return encode_frame(Frame.ECHO, _ECHO.pack(offset, flags))


def encode_echo_wanted(on: bool) -> bytes:
    return encode_frame(Frame.ECHO, bytes((1 if on else 0,)))


def decode_echo_wanted(body: bytes) -> bool:
    if len(body) != 1 or body[0] > 1:
        raise ProtocolError("malformed echo request")
    return body[0] == 1


def decode_echo(body: bytes) -> tuple[int, int]:
    """The offset and flags (unknown flags are kept: a later host may say more)."""
    if len(body) != _ECHO.size:
        raise ProtocolError("malformed echo frame")
    offset, flags = _ECHO.unpack(body)
    if offset >= 2**63:
        raise ProtocolError("malformed echo frame")
    return offset, flags


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How the shared program ended, as the EXIT frame carries it."""

    code: int  # shell-style: the exit code, or 128 + signal
    signal: int | None
    reason: str | None = None  # the host ended the session itself, and why (host/lifetime.py)

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"was killed by {name}"
        return f"exited with status {self.code}"


# Characters of an EXIT frame's reason a joiner keeps (it shows them on its exit line).
EXIT_REASON_MAX = 200


def encode_exit(code: int, signal: int | None, reason: str | None = None) -> bytes:
    body: dict[str, Any] = {"code": code, "signal": signal}
    if reason is not None:
        body["reason"] = reason[:EXIT_REASON_MAX]
    return encode_frame(Frame.EXIT, json.dumps(body).encode())


def decode_exit(body: bytes) -> tuple[int, int | None]:
    d = json_object(body, "exit frame")
    code, sig = d.get("code"), d.get("signal")
    if not is_int(code) or not (sig is None or is_int(sig)):
        raise ProtocolError("malformed exit frame")
    return code, sig


def exit_reason(body: bytes) -> str | None:
    """Why the host ended the session, if it did (a joiner shows it, made printable)."""
    reason = json_object(body, "exit frame").get("reason")
    return reason[:EXIT_REASON_MAX] if isinstance(reason, str) and reason else None
