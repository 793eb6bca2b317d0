"""What `beach host` was asked to do: read by the session, its registration and each joiner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..keys import DEFAULT_SECRET_LENGTH
from .guesses import DEFAULT_GUESS_LIMIT


@dataclass
class HostOptions:
    command: list[str]
    server: str | None = None
    port: int = 7777
    bind: str = "0.0.0.0"
    advertise: str | None = None
    ice_servers: list[str] = field(default_factory=list)
    info_file: Path | None = None
    secret_length: int = DEFAULT_SECRET_LENGTH
    size_mode: str = "smallest"  # or "host"
    connect_timeout: float = 20.0
    approve: bool = False  # ask the host before letting each joiner in
    record: Path | None = None  # asciicast v2 file
    on_guess_limit: str = "new-token"  # or "stop": after too many wrong tokens
    guess_limit: int = DEFAULT_GUESS_LIMIT  # wrong tokens for one role before that
    web_origin: str | None = None  # links to a copy of the page hosted there, not the server's
