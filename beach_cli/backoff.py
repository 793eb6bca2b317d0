"""Exponential backoff between attempts: the host re-registering with the server and the joiner
redialling the host wait the same way."""

from __future__ import annotations


class Backoff:
    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self, cap: float | None = None) -> float:
        """The wait before this attempt; the one after is twice as long, up to the cap (or
        `cap` for this step: a refusal may wait longer than a lost connection)."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap if cap is None else cap)
        return delay

    def at_least(self, delay: float) -> None:
        """The next wait is no shorter than `delay` (e.g. after a refusal)."""
        self.delay = max(self.delay, delay)

    def reset(self) -> None:
        self.delay = self.first
