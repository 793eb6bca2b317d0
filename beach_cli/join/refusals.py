"""What a "no" from the server or the host means to the joiner, as the error it exits with."""

from __future__ import annotations

from typing import Any

from ..errors import (
    BeachError,
    ConnectTimeout,
    HostAway,
    KeyRefused,
    RateLimited,
    Refused,
    SecurityError,
    UnknownSession,
    WrongToken,
)
from ..text import printable
from ..wire.keyplane import (
    R_KEY_REFUSED,
    R_PROTOCOL,
    R_SECURITY,
    R_TIMEOUT,
    R_WRONG_TOKEN,
    REJECT_REASONS,
)
from ..wire.signaling import E_HOST_AWAY, E_RATE_LIMITED, E_TOO_MANY, E_UNKNOWN_SESSION


def server_error(msg: dict[str, Any]) -> BeachError:
    # The server's words, never its control characters (an OSC 52 would set our clipboard).
    code, text = msg["code"], printable(str(msg["message"]), 200)
    if code == E_UNKNOWN_SESSION:
        return UnknownSession(f"{text} (check the token, or the session has ended)")
    if code == E_HOST_AWAY:
        return HostAway(text)
    if code == E_RATE_LIMITED:
        return RateLimited(text)
    if code in (E_TOO_MANY, "dropped"):
        return Refused(text)
    return BeachError(f"the server said: {text}")


def rejected(reason: str) -> BeachError:
    """A `reject` travels unsealed (anyone on the path can forge one): show only the meaning
    we know for its code, never its text."""
    meaning = REJECT_REASONS.get(reason)
    if meaning is None:
        return Refused(
            "the host refused this join attempt (for a reason this version does not know)"
        )
    if reason == R_WRONG_TOKEN:
        return WrongToken(meaning)
    if reason in (R_SECURITY, R_PROTOCOL):
        return SecurityError(meaning)
    if reason == R_TIMEOUT:
        return ConnectTimeout(meaning)
    if reason == R_KEY_REFUSED:
        return KeyRefused(meaning)
    return Refused(meaning)
