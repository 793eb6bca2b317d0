"""The wire, in one place: signaling messages (JSON over the WebSocket), the key-plane payloads
carried inside `signal`, and the binary frames on the WebRTC data channel.

Everything that crosses a process boundary is encoded and validated here, so a malformed
message becomes a `ProtocolError` value at the edge instead of an exception deep inside.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .errors import ProtocolError

# Signaling protocol version; a server refuses messages of any other version.
VERSION = 1
# Data-channel protocol version, exchanged in HELLO frames.
FRAME_VERSION = 1

# Largest signaling message accepted by either side (SDP with many candidates is ~5 KiB).
MAX_MESSAGE_BYTES = 64 * 1024
# What the server sends may exceed a relayed message by its envelope; clients accept this much.
MAX_SERVER_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 1024
# aiortc refuses data-channel messages above 262,144 bytes; stay well below with room for the
# frame header and compression overhead.
MAX_FRAME_BYTES = 262_144
MAX_CHUNK_BYTES = 64 * 1024
# A relayed frame's text, leaving room for the envelope within MAX_MESSAGE_BYTES.
MAX_RELAY_DATA = MAX_MESSAGE_BYTES - 1024

_ID_RE = re.compile(r"[a-z0-9]{1,32}")

# ---------------------------------------------------------------------------------------------
# Signaling messages
# ---------------------------------------------------------------------------------------------


# Each message type lists its fields: name -> (python type, required, max length for str).
# Ids (sessions, peers) are a type of their own: short lowercase alphanumerics.
class _Id(str):
    pass


_Spec = dict[str, tuple[type, bool, int]]
_ID = (_Id, True, 32)
_OPT_ID = (_Id, False, 32)

CLIENT_MESSAGES: dict[str, _Spec] = {
    # host -> server: register a new session, or reclaim one after a reconnect.
    "host": {"session": _OPT_ID, "reclaim": (str, False, 64)},
    # joiner -> server: ask to be introduced to the host of a session.
    "join": {"session": _ID},
    # either -> server: relay `data` to one named party ("host" from a joiner, a peer id from
    # the host). The server never looks inside `data`.
    "signal": {"to": _ID, "data": (dict, True, 0)},
    # host -> server: disconnect one peer (wrong secret, denied, ...).
    "drop": {"peer": _ID, "reason": (str, False, 200)},
    # either -> server: one sealed data-channel frame for `to`, when no peer-to-peer path
    # exists (base64 of sequence number + ciphertext; opaque to the server).
    "relay": {"to": _ID, "data": (str, True, MAX_RELAY_DATA)},
}

SERVER_MESSAGES: dict[str, _Spec] = {
    "welcome": {"server": (str, True, 64), "ice_servers": (list, True, 0)},
    "registered": {"session": _ID, "reclaim": (str, True, 64), "ice_servers": (list, False, 0)},
    "joined": {"session": _ID, "peer": _ID, "ice_servers": (list, False, 0)},
    "peer_joined": {"peer": _ID, "addr": (str, False, 64), "ice_servers": (list, False, 0)},
    "peer_left": {"peer": _ID},
    "host_left": {"reason": (str, False, 200)},
    "signal": {"from": _ID, "data": (dict, True, 0)},
    "relay": {"from": _ID, "data": (str, True, MAX_RELAY_DATA)},
    "error": {"code": (str, True, 32), "message": (str, True, 500)},
    # server -> host: joins of its session that the server turned away since the last one
    # (sent at most every few seconds), so the host learns that someone is knocking.
    "joins_refused": {"code": (str, True, 32), "count": (int, True, 0)},
}

# Error codes the server sends.
E_BAD_MESSAGE = "bad_message"
E_UNKNOWN_SESSION = "unknown_session"
E_HOST_AWAY = "host_away"
E_UNKNOWN_PEER = "unknown_peer"
E_NOT_ALLOWED = "not_allowed"
E_RATE_LIMITED = "rate_limited"
E_TOO_MANY = "too_many"
E_DROPPED = "dropped"


def _check(msg: dict[str, Any], specs: dict[str, _Spec]) -> dict[str, Any]:
    mtype = msg.get("type")
    if not isinstance(mtype, str) or mtype not in specs:
        raise ProtocolError(f"unknown message type {str(mtype)[:32]!r}")
    if type(msg.get("v")) is not int or msg["v"] != VERSION:
        raise ProtocolError(f"unsupported protocol version {str(msg.get('v'))[:16]!r}")
    spec = specs[mtype]
    for name, (ftype, required, maxlen) in spec.items():
        if name not in msg:
            if required:
                raise ProtocolError(f"{mtype}: missing field {name!r}")
            continue
        value = msg[name]
        is_id = ftype is _Id
        want = str if is_id else ftype
        # bool is an int subclass; never accept it where another type is wanted.
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise ProtocolError(f"{mtype}: field {name!r} must be {want.__name__}")
        if want is str:
            if maxlen and len(value) > maxlen:
                raise ProtocolError(f"{mtype}: field {name!r} too long")
            if is_id and not _ID_RE.fullmatch(value):
                raise ProtocolError(f"{mtype}: field {name!r} is not a valid id")
    unknown = set(msg) - set(spec) - {"type", "v"}
    if unknown:
        raise ProtocolError(f"{mtype}: unexpected fields {sorted(unknown)[:4]}")
    return msg


def _json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object; deep nesting and bad UTF-8 are protocol errors, not crashes."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return obj


def _is_resume_id(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass: refuse it


def _parse(
    raw: str | bytes, specs: dict[str, _Spec], limit: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    if len(raw) > limit:
        raise ProtocolError("message too large")
    return _check(_json_object(raw, "message"), specs)


def parse_client_message(raw: str | bytes) -> dict[str, Any]:
    """Validate a message a client sent to the server."""
    return _parse(raw, CLIENT_MESSAGES)


def parse_server_message(raw: str | bytes) -> dict[str, Any]:
    """Validate a message the server sent to a client."""
    return _parse(raw, SERVER_MESSAGES, MAX_SERVER_MESSAGE_BYTES)


def _encode(
    mtype: str, specs: dict[str, _Spec], fields: dict[str, Any], limit: int = MAX_MESSAGE_BYTES
) -> str:
    msg = {"type": mtype, "v": VERSION, **{k: v for k, v in fields.items() if v is not None}}
    _check(msg, specs)  # never send what the other side would refuse
    # Not ensure_ascii: a relayed payload must not grow (\u escapes) on its way through.
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > limit:
        raise ProtocolError("message too large")
    return text


def client_message(mtype: str, **fields: Any) -> str:
    return _encode(mtype, CLIENT_MESSAGES, fields)


def server_message(mtype: str, **fields: Any) -> str:
    # A relayed message keeps its payload and swaps "to" for "from": allow for the envelope.
    return _encode(mtype, SERVER_MESSAGES, fields, MAX_SERVER_MESSAGE_BYTES)


# ---------------------------------------------------------------------------------------------
# Key-plane payloads: the `data` of `signal` messages. Opaque to the server.
# ---------------------------------------------------------------------------------------------

# "pake"    {role, m}        SPAKE2 message (base64); joiner's carries the role it claims
# "confirm" {mac}            key confirmation (base64 HMAC over the transcript)
# "sealed"  {n, c}           AEAD ciphertext (base64) with its sequence number
# "reject"  {reason}         the host refuses this attempt (wrong secret, denied, full)
# "hold"    {s}              the host will answer after s seconds (guess delays)
# A `reject` names its reason with one of these codes, never free text: it travels unsealed,
# so a joiner prints only the meaning it knows for a code (a server could forge any text).
R_WRONG_TOKEN = "wrong token"  # either side: the key confirmation did not match
R_DENIED = "denied"  # host: the person hosting said no (--approve)
R_NOT_ACCEPTING = "not accepting"  # host: no more joiners (guess limit reached with 'stop')
R_TIMEOUT = "timeout"  # host: a handshake step did not arrive in time
R_SECURITY = "security"  # host: a sealed message failed to open or was replayed
R_PROTOCOL = "protocol"  # host: a message out of order or malformed
R_GAVE_UP = "gave up"  # joiner: stopped trying (no path, interrupted)
REJECT_REASONS = {
    R_WRONG_TOKEN: "the join token is wrong or no longer valid",
    R_DENIED: "the host did not let you in",
    R_NOT_ACCEPTING: "the host no longer accepts joiners",
    R_TIMEOUT: "the host gave up waiting for this join attempt",
    R_SECURITY: "the host refused a tampered or replayed message (is the server honest?)",
    R_PROTOCOL: "the host received a message out of order (is the server honest?)",
    R_GAVE_UP: "the joiner gave up",
}

PAYLOADS: dict[str, _Spec] = {
    "pake": {"role": (str, False, 8), "m": (str, True, 200)},
    "confirm": {"mac": (str, True, 100)},
    "sealed": {"n": (int, True, 0), "c": (str, True, MAX_MESSAGE_BYTES)},
    "reject": {"reason": (str, True, 200)},
    # host -> joiner, before its SPAKE2 message: this attempt waits `s` seconds for its turn
    # (wrong tokens earlier made the host slow down). Unsealed, so a joiner only extends its
    # own deadline by it, never past HOLD_MAX.
    "hold": {"s": (int, True, 0)},
}
HOLD_MAX = 180  # seconds: the longest hold a joiner waits out


def payload(kind: str, **fields: Any) -> dict[str, Any]:
    data = {"k": kind, **fields}
    parse_payload(data)
    return data


def parse_payload(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError("signal payload must be an object")
    kind = data.get("k")
    if not isinstance(kind, str) or kind not in PAYLOADS:
        raise ProtocolError(f"unknown signal payload {str(kind)[:16]!r}")
    spec = PAYLOADS[kind]
    for name, (ftype, required, maxlen) in spec.items():
        if name not in data:
            if required:
                raise ProtocolError(f"{kind}: missing field {name!r}")
            continue
        value = data[name]
        if not isinstance(value, ftype) or isinstance(value, bool):
            raise ProtocolError(f"{kind}: field {name!r} must be {ftype.__name__}")
        if ftype is str and maxlen and len(value) > maxlen:
            raise ProtocolError(f"{kind}: field {name!r} too long")
    unknown = set(data) - set(spec) - {"k"}
    if unknown:
        raise ProtocolError(f"{kind}: unexpected fields {sorted(unknown)[:4]}")
    return data


# Sealed messages, once opened: {"t": "offer"|"answer", "sdp": str},
# {"t": "candidate", "candidate": str, "sdpMid": str|None, "sdpMLineIndex": int|None}, or
# {"t": "wait"} (host -> joiner: the host is being asked to let you in), or
# {"t": "join", "resume": str|None} (joiner -> host, first after the key is confirmed: the
# resume id a previous connection was given, to carry on where it left off), or
# {"t": "relay"} (joiner -> host: no peer-to-peer path; carry frames through the server).
SEALED_TYPES = {"offer", "answer", "candidate", "wait", "join", "relay"}


def parse_sealed(plain: bytes) -> dict[str, Any]:
    msg = _json_object(plain, "sealed message")
    kind = msg.get("t")
    if not isinstance(kind, str) or kind not in SEALED_TYPES:
        raise ProtocolError("unknown sealed message")
    if kind in ("offer", "answer") and not isinstance(msg.get("sdp"), str):
        raise ProtocolError("sealed sdp missing")
    if kind == "join" and not (msg.get("resume") is None or _is_resume_id(msg["resume"])):
        raise ProtocolError("malformed resume id")
    if kind == "candidate":
        mid, index = msg.get("sdpMid"), msg.get("sdpMLineIndex")
        if not isinstance(msg.get("candidate"), str):
            raise ProtocolError("sealed candidate missing")
        if not (mid is None or isinstance(mid, str)) or not (index is None or _is_int(index)):
            raise ProtocolError("malformed sealed candidate")
    return msg


# ---------------------------------------------------------------------------------------------
# Data-channel frames: one type byte, then the body.
# ---------------------------------------------------------------------------------------------


class Frame(IntEnum):
    HELLO = 1  # JSON: {"v", "role", "cols", "rows", "features", "applied"?, "resume"?} both ways
    OUTPUT = 2  # terminal bytes, host -> joiner (zlib stream if negotiated)
    INPUT = 3  # u64 offset of the first byte in the joiner's input stream, then keystrokes
    RESIZE = 4  # u16 cols, u16 rows: joiner's window (->host) or the PTY size (->joiner)
    EXIT = 5  # JSON: {"code": int, "signal": int|null}
    PING = 6  # 8 opaque bytes, echoed in PONG
    PONG = 7
    NOTICE = 8  # UTF-8 text the joiner shows outside the shared screen
    SNAPSHOT = 9  # like OUTPUT, but starts a fresh screen (late join, resync)
    ACK = 10  # u64: the joiner's input up to this offset has reached the PTY


_RESIZE = struct.Struct("!HH")
_OFFSET = struct.Struct("!Q")


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
    d = _json_object(body, "hello")
    v, role, feats = d.get("v"), d.get("role"), d.get("features", [])
    if not _is_int(v) or not isinstance(role, str) or not isinstance(feats, list):
        raise ProtocolError("malformed hello")
    cols, rows = _size(d.get("cols"), d.get("rows"))
    applied = d.get("applied", 0)
    resume = d.get("resume")
    if not _is_int(applied) or not 0 <= applied < 2**63:
        raise ProtocolError("malformed hello")
    if not (resume is None or _is_resume_id(resume)):
        raise ProtocolError("malformed hello")
    feats_ = tuple(str(f)[:32] for f in feats[:16])
    return Hello(v, role[:16], cols, rows, feats_, applied, resume)


def _size(cols: Any, rows: Any) -> tuple[int, int]:
    if not _is_int(cols) or not _is_int(rows):
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


def encode_exit(code: int, signal: int | None) -> bytes:
    return encode_frame(Frame.EXIT, json.dumps({"code": code, "signal": signal}).encode())


def decode_exit(body: bytes) -> tuple[int, int | None]:
    d = _json_object(body, "exit frame")
    code, sig = d.get("code"), d.get("signal")
    if not _is_int(code) or not (sig is None or _is_int(sig)):
        raise ProtocolError("malformed exit frame")
    return code, sig
