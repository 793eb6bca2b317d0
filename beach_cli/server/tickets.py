"""Reclaim tickets: the proof that lets a host take its session id back after the server
restarted, which nobody else can make.

The server hands a host its ticket in `registered`:

    base64url(version ‖ nonce ‖ HMAC-SHA256(server key, "beach-reclaim/1|" sid "|" version ‖ nonce))

1 + 15 + 32 bytes, 64 characters: the `reclaim` field's size. A server that still holds the
session compares the ticket with the one it issued; a server that lost the session (it
restarted) re-creates it only for a ticket its key verifies. The key lives in a state file
(`beach serve --state-file`), so a restarted server still knows it; the embedded server of
`beach host` keeps a random key in memory (it never outlives its host).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from ..errors import BeachError

VERSION = 1
NONCE_BYTES = 15
KEY_BYTES = 32
TICKET_LENGTH = 64  # characters: (1 + 15 + 32) bytes in base64url without padding
_LABEL = b"beach-reclaim/1|"


class StateFileError(BeachError):
    """The state file cannot be read, created or trusted."""


class ReclaimKey:
    """The server's secret for reclaim tickets."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        if len(self._key) != KEY_BYTES:
            raise ValueError("a reclaim key is 32 bytes")

    def _mac(self, sid: str, head: bytes) -> bytes:
        return hmac.new(self._key, _LABEL + sid.encode() + b"|" + head, hashlib.sha256).digest()

    def issue(self, sid: str) -> str:
        head = bytes((VERSION,)) + secrets.token_bytes(NONCE_BYTES)
        return base64.urlsafe_b64encode(head + self._mac(sid, head)).decode().rstrip("=")

    def verify(self, sid: str, ticket: str) -> bool:
        """True only for a ticket this key issued for `sid`. Costs one HMAC whatever the input,
        so a refusal takes as long for a live id as for a free one."""
        raw = b""
        if len(ticket) == TICKET_LENGTH:
            with contextlib.suppress(binascii.Error, ValueError):
                raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
        size = 1 + NONCE_BYTES
        head, mac = raw[:size], raw[size:]
        expected = self._mac(sid, head if len(head) == size else bytes(size))
        if len(mac) != len(expected):
            return False
        return hmac.compare_digest(mac, expected) and raw[0] == VERSION

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it (cluster instances compare theirs)."""
        return hmac.new(self._key, b"beach-key-id/1", hashlib.sha256).hexdigest()[:32]

    @classmethod
    def from_state_file(cls, path: Path) -> ReclaimKey:
        """The key kept in `path`, made (mode 0600) on first start."""
        try:
            return cls(_read(path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateFileError(f"cannot read the state file {path}: {exc.strerror}") from exc
        try:
            _create(path)
            return cls(_read(path))
        except OSError as exc:
            raise StateFileError(f"cannot create the state file {path}: {exc.strerror}") from exc


def ticket_digest(ticket: str) -> str:
    """What the cluster stores in Redis for a session: enough to compare, useless to present."""
    return hashlib.sha256(ticket.encode()).hexdigest()


def default_state_path() -> Path:
    """Where a long-running `beach serve` keeps its state: systemd's StateDirectory if set,
    else $XDG_STATE_HOME/beach (~/.local/state/beach)."""
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "serve-state.json"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "beach" / "serve-state.json"


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise StateFileError(f"the state file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise StateFileError(
                f"the state file {path} holds a secret but others may read it "
                f"(run: chmod 600 {path})"
            )
        data = f.read(4096)
    try:
        state = json.loads(data)
        key = base64.b64decode(state["reclaim_key"], validate=True)
        if state.get("version") != 1 or len(key) != KEY_BYTES:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise StateFileError(f"the state file {path} is damaged (move it away)") from exc
    return key


def _create(path: Path) -> None:
    """Write a fresh key to `path` unless another process got there first: written to a
    private temporary file, then linked into place (atomic, and never over an existing file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    text = json.dumps({"version": 1, "reclaim_key": key}) + "\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another instance won: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
