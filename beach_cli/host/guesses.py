"""Wrong-token guesses at one role's secret: a few are free, then each costs a growing wait,
and after `limit` guesses the secret is replaced.

Each SPAKE2 exchange the host answers is one online guess. Attempts of a role run one at a time
(the next waits for the outcome of the one before, so a burst cannot overtake the count) and each
waits until the role's delay since its last wrong guess has passed. Roles are counted apart: a
flood of view-token guesses never slows read-write joiners nor rotates their token.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

FREE_GUESSES = 3  # typos: no delay for the first few wrong tokens
FIRST_DELAY = 1.0  # then 1, 2, 4 ... seconds between attempts,
MAX_DELAY = 60.0  # up to one guess a minute
DEFAULT_GUESS_LIMIT = 10  # wrong guesses at one secret before it is replaced
FORGET_AFTER = 600.0  # a role without a wrong guess for this long has no delay again
# Longest an attempt queues behind others of its role before it is turned away (as timed out);
# with the delay after it, still within the joiner's protocol.HOLD_MAX.
QUEUE_MAX = 110.0


def delay_after(strikes: int) -> float:
    """Seconds a new attempt waits after the last of `strikes` recent wrong guesses."""
    if strikes < FREE_GUESSES:
        return 0.0
    return min(FIRST_DELAY * 2 ** (strikes - FREE_GUESSES), MAX_DELAY)


class Attempt:
    """One attempt's outcome, filled in by the handshake inside `GuessGate.turn`."""

    def __init__(self, who: str) -> None:
        self.who = who  # the joiner, as the host names it in notices
        self.spent = False  # the joiner has our SPAKE2 message: one guess
        self.verified = False  # ...and it proved it knows the secret


class GuessGate:
    """The guesses at one role's secret."""

    def __init__(
        self,
        role: str,
        on_wrong: Callable[[GuessGate, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self._on_wrong = on_wrong
        self._clock = clock
        self._lock = asyncio.Lock()
        self.spent = 0  # wrong guesses at the current secret (never forgotten)
        self.total = 0  # wrong guesses since the host started
        self.strikes = 0  # recent wrong guesses: they set the delay
        self._last = -math.inf

    def wait_left(self) -> float:
        now = self._clock()
        if now - self._last > FORGET_AFTER:
            self.strikes = 0
        return max(0.0, self._last + delay_after(self.strikes) - now)

    def next_delay(self) -> float:
        """The delay after the last wrong guess that a new attempt of this role faces."""
        return delay_after(self.strikes)

    def new_secret(self) -> None:
        """The secret was replaced: its guesses start again, the delay stays (a flood gains no
        speed from a rotation)."""
        self.spent = 0

    @contextlib.asynccontextmanager
    async def turn(
        self, who: str, on_hold: Callable[[float], Awaitable[None]] | None = None
    ) -> AsyncIterator[Attempt]:
        """Wait for this role's turn and delay; the body runs one handshake and marks the
        attempt. A spent, unverified attempt is counted before the next one may start.
        `on_hold(seconds)` hears how long the attempt may wait, before each wait (the joiner
        is told, so that its own deadline allows for it). Queueing longer than QUEUE_MAX
        raises TimeoutError."""
        if self._lock.locked() and on_hold is not None:
            await on_hold(QUEUE_MAX + self.next_delay())
        async with asyncio.timeout(QUEUE_MAX):
            await self._lock.acquire()
        try:
            wait = self.wait_left()
            if wait > 0:
                if on_hold is not None:
                    await on_hold(wait)
                await asyncio.sleep(wait)
            attempt = Attempt(who)
            try:
                yield attempt
            finally:
                if attempt.spent and not attempt.verified:
                    self.spent += 1
                    self.total += 1
                    self.strikes += 1
                    self._last = self._clock()
                    self._on_wrong(self, who)
        finally:
            self._lock.release()
