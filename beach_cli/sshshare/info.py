"""The remote host's join information, as the remote script sends it on ssh's stdout: read
with a bound on everything (a login shell may print noise first; a hostile remote may print
anything), and checked down to what we use of it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import BeachError
from ..keys import parse_token
from ..rendezvous import normalize_url
from ..text import printable
from .remote import BEGIN, END

# Lines before BEGIN are noise from the remote's shell start-up files (a `.bashrc` that echoes):
# skipped, up to this many. The information itself is a small JSON object.
MAX_NOISE_LINES = 500
MAX_NOISE_BYTES = 256 * 1024
MAX_INFO_BYTES = 64 * 1024
MAX_FIELD = 200


class BadInfo(BeachError):
    """What the remote sent is not a beach host's join information."""


@dataclass(frozen=True)
class RemoteInfo:
    session: str
    token: str  # the read-write join token
    server: str  # the server's URL as the remote host dials it
    # The port of the remote's embedded server on the remote's loopback, to be forwarded
    # here; None if the server is elsewhere (a server of the remote's own configuration).
    loopback_port: int | None


async def read_info(readline: Callable[[], Awaitable[bytes]]) -> RemoteInfo | None:
    """The information between the BEGIN and END lines; None if the stream ends first. A line
    longer than the reader's limit makes `readline` raise ValueError: bad information too."""
    noise = noise_bytes = 0
    try:
        while (line := await readline()).rstrip(b"\r\n") != BEGIN.encode():
            if not line:
                return None
            noise, noise_bytes = noise + 1, noise_bytes + len(line)
            if noise > MAX_NOISE_LINES or noise_bytes > MAX_NOISE_BYTES:
                raise BadInfo(f"{noise} lines of something else, and no join information")
        body = b""
        while (line := await readline()).rstrip(b"\r\n") != END.encode():
            if not line:
                raise BadInfo("its join information was cut short")
            body += line
            if len(body) > MAX_INFO_BYTES:
                raise BadInfo(f"its join information is over {MAX_INFO_BYTES // 1024} KiB")
    except ValueError as exc:
        raise BadInfo("a line too long to be join information") from exc
    return parse_info(body)


def parse_info(body: bytes) -> RemoteInfo:
    """The session, the read-write token and the embedded server's port, or BadInfo."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadInfo("its join information is not JSON") from exc
    if not isinstance(data, dict):
        raise BadInfo("its join information is not a JSON object")
    fields = {}
    for key in ("session", "join_token", "server"):
        value = data.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD:
            raise BadInfo(f"its join information has no usable {key!r}")
        fields[key] = value
    try:
        token = parse_token(fields["join_token"])
    except BeachError as exc:
        raise BadInfo(f"its join token {printable(fields['join_token'], 60)!r} is not one") from exc
    if token.role != "rw" or token.session != fields["session"].strip().lower():
        raise BadInfo("its join token is not the session's read-write token")
    try:
        url = normalize_url(fields["server"])
        parts = urlsplit(url)
        port = parts.port
    except (BeachError, ValueError) as exc:
        raise BadInfo("its server address is not one") from exc
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if loopback and port is None:
        raise BadInfo("its server address has no port")
    return RemoteInfo(token.session, str(token), url, port if loopback else None)
