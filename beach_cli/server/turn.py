"""The ICE servers `beach serve` hands out: STUN URLs, and TURN URLs with short-lived
credentials minted by coturn's REST scheme (`use-auth-secret` in turnserver.conf):
username = "<expiry unix time>:<session>", password = base64(HMAC-SHA1(secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TURN_TTL = 24 * 3600  # a day: long enough for a session and its reconnects


def turn_credentials(
    secret: str, label: str, ttl: int, now: float | None = None
) -> tuple[str, str]:
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{label}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass
class IceConfig:
    stun: list[str] = field(default_factory=list)
    turn: list[str] = field(default_factory=list)
    turn_secret: str | None = None
    turn_ttl: int = DEFAULT_TURN_TTL

    def servers(self, label: str) -> list[dict[str, Any]]:
        """The list for one client; fresh TURN credentials each time (`label`: the session)."""
        out: list[dict[str, Any]] = [{"urls": [u]} for u in self.stun]
        if self.turn:
            entry: dict[str, Any] = {"urls": list(self.turn)}
            if self.turn_secret:
                entry["username"], entry["credential"] = turn_credentials(
                    self.turn_secret, label, self.turn_ttl
                )
            out.append(entry)
        return out
