"""How fast a path to a peer delivers, and its round trip: what a sender needs to hold no more for
a peer than the path can deliver promptly (host/stream.py skips what it cannot).

Both are learnt from what the path does anyway: the rate from how fast it takes what we queue
(for a data channel, SCTP takes bytes only as acknowledgements open its window, so this is the
delivery rate), the round trip from the heartbeat's PING and PONG.
"""

from __future__ import annotations

from collections import deque

RATE_EVERY = 0.05  # s: the shortest interval a rate is measured over
RATE_WEIGHT = 0.25  # weight of a new measure in the moving average
RTT_SAMPLES = 8  # the round trip is the least of the last few (a PING can queue behind output)
RTT_MAX = 10.0  # s: a PONG claiming more (or less than nothing) is not ours


class Pace:
    def __init__(self) -> None:
        self.rate: float | None = None  # bytes/s the path took while it had something to take
        self._rtts: deque[float] = deque(maxlen=RTT_SAMPLES)
        self._at: float | None = None
        self._taken = 0
        self._pending = 0

    @property
    def rtt(self) -> float | None:
        return min(self._rtts, default=None)

    def round_trip(self, seconds: float) -> None:
        if 0 <= seconds <= RTT_MAX:
            self._rtts.append(seconds)

    def sample(self, now: float, taken: int, pending: int) -> None:
        """`taken`: bytes the path has taken from us so far; `pending`: bytes it has yet to take.
        An interval the path was busy throughout measures its rate. One where it ran dry only
        shows it is at least that fast (it was waiting for us): that may raise a rate measured
        before, but never stands for one (an echo taken at once and looked at a second later
        says nothing of the path)."""
        if self._at is None or self._pending == 0:  # idle until now: measure from here
            self._at, self._taken, self._pending = now, taken, pending
            return
        elapsed = now - self._at
        moved = taken - self._taken
        if elapsed < RATE_EVERY or moved == 0:
            return  # a path takes whole messages: measure from when it last took one
        measured = moved / elapsed
        if moved < self._pending:  # busy throughout
            if self.rate is None:
                self.rate = measured
            else:
                self.rate += RATE_WEIGHT * (measured - self.rate)
        elif self.rate is not None and measured > self.rate:
            self.rate = measured
        self._at, self._taken, self._pending = now, taken, pending

    def seconds_for(self, nbytes: int) -> float | None:
        """How long the path would take to deliver `nbytes` more, if its rate is known."""
        return None if not self.rate else nbytes / self.rate
