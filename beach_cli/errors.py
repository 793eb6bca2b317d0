"""Typed errors with a human message. The CLI turns each into one line and an exit code."""

from __future__ import annotations


class BeachError(Exception):
    """An expected failure: its message is shown to the user as is."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(BeachError):
    """A message or frame that does not follow the wire format."""

    exit_code = 3


class ServerUnreachable(BeachError):
    exit_code = 4


class NotSent(ServerUnreachable):
    """The connection to the server was closed before a message could go: it never left."""


class UnknownSession(BeachError):
    exit_code = 5


class WrongToken(BeachError):
    exit_code = 6


class Refused(BeachError):
    """The host or the server turned us away (denied, full, rate-limited)."""

    exit_code = 7


class RateLimited(Refused):
    """The server wants us to slow down; worth trying again later."""


class HostGone(BeachError):
    exit_code = 8


class HostAway(HostGone):
    """The server knows the session, but its host is no longer connected."""


class ConnectTimeout(BeachError):
    exit_code = 9


class SecurityError(BeachError):
    """A sealed message failed to open, a replay, or a key confirmation mismatch."""

    exit_code = 10


class NobodyJoined(BeachError):
    """`beach host --wait-for-joiner`: nobody completed a join in time."""

    exit_code = 11


class TimeLimit(BeachError):
    """`beach host --max-duration`: the session's time ran out."""

    exit_code = 12


class KeyRefused(BeachError):
    """This session admits only named SSH keys, and ours is none of them (or we have none)."""

    exit_code = 13


class KeysUnavailable(BeachError):
    """`beach host --authorized-keys/--github-user`: the allowed keys could not be read."""

    exit_code = 14
