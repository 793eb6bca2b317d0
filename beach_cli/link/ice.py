"""The ICE servers a peer connection uses: this side's own, then what the server offered."""

from __future__ import annotations

from typing import Any


def merge(configured: list[str], offered: Any) -> list[dict[str, Any]]:
    """This side's own ICE URLs first, then what the server offered (if well-formed)."""
    out: list[dict[str, Any]] = [{"urls": [u]} for u in configured]
    for entry in offered if isinstance(offered, list) else []:
        if isinstance(entry, dict) and entry not in out:
            out.append(entry)
    return out
