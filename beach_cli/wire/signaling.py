"""Signaling: the JSON messages between a client (host or joiner) and `beach serve`, over the
WebSocket. The only plane the server reads; what it relays inside `signal` and `relay` is opaque
to it (see keyplane.py and frames.py).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ProtocolError
from .fields import ID, OPT_ID, Spec, check_fields, json_object

# Signaling protocol version; a server refuses messages of any other version.
VERSION = 1

# Largest signaling message accepted by either side (SDP with many candidates is ~5 KiB).
MAX_MESSAGE_BYTES = 64 * 1024
# What the server sends may exceed a relayed message by its envelope; clients accept this much.
MAX_SERVER_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 1024
# A relayed frame's text, leaving room for the envelope within MAX_MESSAGE_BYTES.
MAX_RELAY_DATA = MAX_MESSAGE_BYTES - 1024

CLIENT_MESSAGES: dict[str, Spec] = {
    # host -> server: register a new session, or reclaim one after a reconnect.
    "host": {"session": OPT_ID, "reclaim": (str, False, 64)},
    # joiner -> server: ask to be introduced to the host of a session.
    "join": {"session": ID},
    # either -> server: relay `data` to one named party ("host" from a joiner, a peer id from
    # the host). The server never looks inside `data`.
    "signal": {"to": ID, "data": (dict, True, 0)},
    # host -> server: disconnect one peer (wrong secret, denied, ...).
    "drop": {"peer": ID, "reason": (str, False, 200)},
    # either -> server: one sealed data-channel frame for `to`, when no peer-to-peer path
    # exists (base64 of sequence number + ciphertext; opaque to the server).
    "relay": {"to": ID, "data": (str, True, MAX_RELAY_DATA)},
}

SERVER_MESSAGES: dict[str, Spec] = {
    "welcome": {"server": (str, True, 64), "ice_servers": (list, True, 0)},
    "registered": {"session": ID, "reclaim": (str, True, 64), "ice_servers": (list, False, 0)},
    "joined": {"session": ID, "peer": ID, "ice_servers": (list, False, 0)},
    "peer_joined": {"peer": ID, "addr": (str, False, 64), "ice_servers": (list, False, 0)},
    "peer_left": {"peer": ID},
    "host_left": {"reason": (str, False, 200)},
    "signal": {"from": ID, "data": (dict, True, 0)},
    "relay": {"from": ID, "data": (str, True, MAX_RELAY_DATA)},
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


def _check(msg: dict[str, Any], specs: dict[str, Spec]) -> dict[str, Any]:
    mtype = msg.get("type")
    if not isinstance(mtype, str) or mtype not in specs:
        raise ProtocolError(f"unknown message type {str(mtype)[:32]!r}")
    if type(msg.get("v")) is not int or msg["v"] != VERSION:
        raise ProtocolError(f"unsupported protocol version {str(msg.get('v'))[:16]!r}")
    return check_fields(mtype, msg, specs[mtype], {"type", "v"})


def _parse(
    raw: str | bytes, specs: dict[str, Spec], limit: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    if len(raw) > limit:
        raise ProtocolError("message too large")
    return _check(json_object(raw, "message"), specs)


def parse_client_message(raw: str | bytes) -> dict[str, Any]:
    """Validate a message a client sent to the server."""
    return _parse(raw, CLIENT_MESSAGES)


def parse_server_message(raw: str | bytes) -> dict[str, Any]:
    """Validate a message the server sent to a client."""
    return _parse(raw, SERVER_MESSAGES, MAX_SERVER_MESSAGE_BYTES)


def _encode(
    mtype: str, specs: dict[str, Spec], fields: dict[str, Any], limit: int = MAX_MESSAGE_BYTES
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
