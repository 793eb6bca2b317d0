"""Keystrokes that survive a reconnect: none lost, none doubled.

The joiner numbers its input stream by byte offset and keeps what the host has not acknowledged
(`InputLog`). The host remembers, per joiner identity (a resume id it hands out in HELLO), how
far it has applied that stream (`ResumeTable`). After a reconnect the host's HELLO says how far
it got, and the joiner resends the rest; whatever arrives twice is cut at the applied offset.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

INPUT_LOG_LIMIT = 1024 * 1024  # unacknowledged keystrokes kept by a joiner
RESUME_ENTRIES = 1024  # joiner identities a host remembers
RESUME_TTL = 600.0  # seconds a host remembers a joiner that left


class InputLog:
    def __init__(self) -> None:
        self.base = 0  # offset of pending[0]
        self.pending = bytearray()
        self.dropped = 0

    @property
    def end(self) -> int:
        return self.base + len(self.pending)

    def add(self, data: bytes) -> int | None:
        """Record keystrokes; returns their offset, or None if the log is full (the host has
        not acknowledged anything for a long time) and they were dropped."""
        if len(self.pending) + len(data) > INPUT_LOG_LIMIT:
            self.dropped += len(data)
            return None
        offset = self.end
        self.pending += data
        return offset

    def ack(self, offset: int) -> None:
        if offset > self.base:
            done = min(offset, self.end) - self.base
            del self.pending[:done]
            self.base += done

    def since(self, offset: int) -> tuple[int, bytes]:
        """What the host still lacks, given that it applied everything before `offset`."""
        self.ack(offset)
        return self.base, bytes(self.pending)


@dataclass
class ResumeRecord:
    role: str
    applied: int = 0  # the joiner's input before this offset has been written to the PTY
    seen: float = field(default_factory=time.monotonic)

    def accept(self, offset: int, data: bytes) -> bytes:
        """The part of an INPUT frame not yet applied (empty for a resent duplicate)."""
        end = offset + len(data)
        self.seen = time.monotonic()
        if end <= self.applied:
            return b""
        fresh = data[self.applied - offset :] if offset < self.applied else data
        self.applied = end
        return fresh


class ResumeTable:
    """Bounded and expiring: at most RESUME_ENTRIES identities, each for RESUME_TTL."""

    def __init__(self) -> None:
        self._records: OrderedDict[str, ResumeRecord] = OrderedDict()

    def _expire(self) -> None:
        now = time.monotonic()
        while self._records:
            rid, rec = next(iter(self._records.items()))
            if now - rec.seen < RESUME_TTL and len(self._records) <= RESUME_ENTRIES:
                break
            del self._records[rid]

    def resume(self, rid: str | None, role: str) -> tuple[str, ResumeRecord, bool]:
        """The identity for a joiner: its old one if `rid` is known for this role (True), else
        a new one (False)."""
        self._expire()
        rec = self._records.get(rid) if rid else None
        if rid is not None and rec is not None and rec.role == role:
            self._records.move_to_end(rid)
            rec.seen = time.monotonic()
            return rid, rec, True
        rid = secrets.token_hex(16)
        rec = ResumeRecord(role)
        self._records[rid] = rec
        self._expire()
        return rid, rec, False
