"""What `beach host` was asked to do: read by the session, its registration and each joiner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..identity.names import DEFAULT_KEYS_URL
from ..keys import DEFAULT_SECRET_LENGTH
from .guesses import DEFAULT_GUESS_LIMIT

# The PTY's size while no window of the host's decides it (headless, before a read-write joiner).
HEADLESS_SIZE = (120, 40)


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
    headless: bool = False  # no terminal of the host's own: no raw mode, no drawing, no stdin
    headless_size: tuple[int, int] = HEADLESS_SIZE  # (cols, rows) standing in for its window
    connect_timeout: float = 20.0
    approve: bool = False  # ask the host before letting each joiner in
    record: Path | None = None  # asciicast v2 file
    on_guess_limit: str = "new-token"  # or "stop": after too many wrong tokens
    guess_limit: int = DEFAULT_GUESS_LIMIT  # wrong tokens for one role before that
    qr: bool = False  # the read-write link as a QR code in the banner, for a phone
    quiet: bool = False  # notices only in the title, never across the bottom row
    web_origin: str | None = None  # links to a copy of the page hosted there, not the server's
    # How long the session lasts besides its shell (host/lifetime.py), in seconds.
    wait_for_joiner: float | None = None  # end (exit 11) if nobody joined within this long
    max_duration: float | None = None  # end (exit 12) after this long
    exit_when_last_leaves: bool = False  # end (exit 0) when the last joiner leaves
    # Only holders of these SSH keys may join (identity/): files and GitHub accounts.
    authorized_keys: list[Path] = field(default_factory=list)
    github_users: list[str] = field(default_factory=list)
    keys_url: str = DEFAULT_KEYS_URL  # where accounts publish keys, as URL/NAME.keys

    @property
    def keys_asked(self) -> bool:
        return bool(self.authorized_keys or self.github_users)
