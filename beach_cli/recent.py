"""The server the last join went through, remembered so that `beach join TOKEN` without one can
suggest it: one line in $XDG_STATE_HOME/beach/last-server (~/.local/state/beach). Best effort:
a home that cannot be written to changes nothing."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MAX_LEN = 500


def _path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "beach" / "last-server"


def remember_server(url: str) -> None:
    with contextlib.suppress(OSError):
        path = _path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(url[:MAX_LEN] + "\n")
        tmp.replace(path)


def last_server() -> str | None:
    """The remembered server, if it looks like one (the file is ours, but a user may edit it)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = _path().read_text(encoding="utf-8").strip()
        if text and len(text) <= MAX_LEN and text.isprintable() and " " not in text:
            return text
    return None
