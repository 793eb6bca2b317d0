"""A token bucket: `rate` a second, holding at most `burst`. Used wherever a peer or a client
can make us spend something (the server's message, byte and join budgets; the host's snapshot
requests), so every such limit works, and is tested, the same way."""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float, tokens: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst if tokens is None else tokens
        self.stamp = time.monotonic()

    def level(self, now: float | None = None) -> float:
        """Refill for the time since the last look, and say how many tokens there are."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, now: float | None = None) -> bool:
        """Spend one token, if there is one."""
        if self.level(now) >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def charge(self, amount: float, now: float | None = None) -> float:
        """Spend `amount` even past empty; the seconds until the debt is paid (0 if none)."""
        self.tokens = self.level(now) - amount
        return max(-self.tokens / self.rate, 0.0)

    @property
    def full(self) -> bool:
        return self.level() >= self.burst
