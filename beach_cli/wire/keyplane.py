"""Key-plane payloads: the `data` of `signal` messages between host and joiner, which the
server relays without reading: SPAKE2, key confirmation, sealed messages, rejects and holds.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProtocolError
from .fields import Spec, check_fields, is_int, is_resume_id, json_object
from .signaling import MAX_MESSAGE_BYTES

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
R_NO_KEY = "no key"  # joiner: it holds none of the SSH keys the host allows
R_KEY_REFUSED = "key refused"  # host: the joiner's key proof failed (not allowed, bad signature)
REJECT_REASONS = {
    R_WRONG_TOKEN: "the join token is wrong or no longer valid",
    R_DENIED: "the host did not let you in",
    R_NOT_ACCEPTING: "the host no longer accepts joiners",
    R_TIMEOUT: "the host gave up waiting for this join attempt",
    R_SECURITY: "the host refused a tampered or replayed message (is the server honest?)",
    R_PROTOCOL: "the host received a message out of order (is the server honest?)",
    R_GAVE_UP: "the joiner gave up",
    R_NO_KEY: "the joiner has none of the SSH keys this session admits",
    R_KEY_REFUSED: "the host refused your SSH key: this session admits only certain keys",
}

PAYLOADS: dict[str, Spec] = {
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
    return check_fields(kind, data, PAYLOADS[kind], {"k"})


# Sealed messages, once opened: {"t": "offer"|"answer", "sdp": str},
# {"t": "candidate", "candidate": str, "sdpMid": str|None, "sdpMLineIndex": int|None}, or
# {"t": "wait"} (host -> joiner: the host is being asked to let you in), or
# {"t": "join", "resume": str|None} (joiner -> host, first after the key is confirmed: the
# resume id a previous connection was given, to carry on where it left off), or
# {"t": "relay"} (joiner -> host: no peer-to-peer path; carry frames through the server), or
# {"t": "prove", "hints": [str]} (host -> joiner: only holders of certain SSH keys may join;
# each hint names one for this handshake only, see identity/proof.py), answered by
# {"t": "proof", "key": str, "sig": str} (base64: the public key's blob and its signature).
SEALED_TYPES = {"offer", "answer", "candidate", "wait", "join", "relay", "prove", "proof"}
MAX_HINTS = 512  # identity.proof.MAX_ALLOWED
MAX_HINT = 32  # characters of one hint
MAX_PROOF_FIELD = 4096  # characters of base64 in a proof's key or signature


def parse_sealed(plain: bytes) -> dict[str, Any]:
    msg = json_object(plain, "sealed message")
    kind = msg.get("t")
    if not isinstance(kind, str) or kind not in SEALED_TYPES:
        raise ProtocolError("unknown sealed message")
    if kind in ("offer", "answer") and not isinstance(msg.get("sdp"), str):
        raise ProtocolError("sealed sdp missing")
    if kind == "join" and not (msg.get("resume") is None or is_resume_id(msg["resume"])):
        raise ProtocolError("malformed resume id")
    if kind == "prove":
        hints = msg.get("hints")
        if not (isinstance(hints, list) and len(hints) <= MAX_HINTS):
            raise ProtocolError("malformed key hints")
        if not all(isinstance(h, str) and len(h) <= MAX_HINT for h in hints):
            raise ProtocolError("malformed key hint")
    if kind == "proof":
        for name in ("key", "sig"):
            value = msg.get(name)
            if not (isinstance(value, str) and 0 < len(value) <= MAX_PROOF_FIELD):
                raise ProtocolError(f"malformed key proof ({name})")
    if kind == "candidate":
        mid, index = msg.get("sdpMid"), msg.get("sdpMLineIndex")
        if not isinstance(msg.get("candidate"), str):
            raise ProtocolError("sealed candidate missing")
        if not (mid is None or isinstance(mid, str)) or not (index is None or is_int(index)):
            raise ProtocolError("malformed sealed candidate")
    return msg
