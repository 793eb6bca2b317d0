"""How long a session lasts besides its shell: `--wait-for-joiner`, `--max-duration`,
`--exit-when-last-leaves`, and the continue file (`beach continue`, or touching
$BEACH_CONTINUE_FILE, inside the shared shell). Whichever comes first settles `ended` with an
`Ending`: the host's exit line and code, and the reason its joiners are told.

"Joined" means a joiner completed its handshake and was greeted (the session's `peer_live`).
A joiner that is connecting (it proved its token, its link is being made) holds off an end
for want of joiners until it is in or gone: its handshake has deadlines of its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..durations import format_duration
from ..errors import BeachError, NobodyJoined, TimeLimit
from ..wire.frames import ExitStatus
from .options import HostOptions

# In the shared shell's environment: creating this file ends the session (exit 0).
CONTINUE_ENV = "BEACH_CONTINUE_FILE"
CONTINUE_POLL = 0.5  # seconds between looks at the continue file
# A joiner gone silent (network drop, sleep) rather than hanging up may be reconnecting: it
# keeps trying for 120 s (join/session.py, RECONNECT_FOR). --exit-when-last-leaves waits that
# long for it, or for anyone, before it counts the joiner as having left.
LOST_GRACE = 120.0


@dataclass(frozen=True)
class Ending:
    """How a session ended."""

    line: str  # the host's exit line (after "beach: ")
    code: int  # beach host's exit code, and its joiners' when the host ended the session
    reason: str | None = None  # told to the joiners; None when the shell ended by itself
    error: type[BeachError] | None = None  # raised (with `line`) once the session is shut down

    @classmethod
    def shell(cls, status: ExitStatus) -> Ending:
        return cls(f"the shared shell {status.describe()}", status.code)

    @classmethod
    def because(cls, reason: str, error: type[BeachError] | None = None) -> Ending:
        code = error.exit_code if error is not None else 0
        return cls(f"{reason}; session ended", code, reason, error)


class Lifetime:
    """The session's clocks and the continue file. The session tells it who comes and goes
    (`joined`, `gone`); `present` says whether anyone is live or connecting right now."""

    def __init__(self, opts: HostOptions, present: Callable[[], bool]) -> None:
        self.opts = opts
        self._present = present
        self.ended: asyncio.Future[Ending] | None = None  # from `start`
        self.continue_file: Path | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._wait: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._poll: asyncio.TimerHandle | None = None  # the next look at the continue file
        self._joined = False  # someone completed a join
        self._waited_out = False  # --wait-for-joiner ran out
        self._alone = False  # --exit-when-last-leaves: the last joiner has left
        self._closed = False

    def start(self, continue_file: Path | None) -> None:
        """The session's clocks start now (the shell is running, its join information shown)."""
        loop = asyncio.get_running_loop()
        self.ended = loop.create_future()
        if self.opts.max_duration is not None:
            self._timers.append(loop.call_later(self.opts.max_duration, self._time_up))
        if self.opts.wait_for_joiner is not None and not self._joined:
            self._wait = loop.call_later(self.opts.wait_for_joiner, self._wait_over)
        self.continue_file = continue_file
        if continue_file is not None:
            self._poll = loop.call_later(CONTINUE_POLL, self._look)

    def close(self) -> None:
        """Stop every clock (the session is ending anyway); comings and goings no longer count."""
        self._closed = True
        for timer in (*self._timers, self._wait, self._grace, self._poll):
            if timer is not None:
                timer.cancel()

    # -- who comes and goes ----------------------------------------------------------------------

    def joined(self) -> None:
        """A joiner completed its handshake."""
        self._joined = True
        self._alone = False
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def gone(self, was_live: bool, hung_up: bool) -> None:
        """A joiner is gone: it had joined (`was_live`), and it hung up rather than went silent
        (`hung_up`: it is not about to reconnect)."""
        if self._closed:
            return
        if was_live and self.opts.exit_when_last_leaves and not self._present():
            if hung_up:
                self._alone = True
            elif self._grace is None:
                loop = asyncio.get_running_loop()
                self._grace = loop.call_later(LOST_GRACE, self._grace_over)
        self._check()

    # -- endings ---------------------------------------------------------------------------------

    def _check(self) -> None:
        if self.ended is None or self.ended.done() or self._present():
            return
        if self._waited_out and not self._joined:
            wait = format_duration(self.opts.wait_for_joiner or 0)
            why = f"nobody joined within {wait} (--wait-for-joiner)"
            self._end(Ending.because(why, NobodyJoined))
        elif self._alone:
            self._end(Ending.because("the last joiner left (--exit-when-last-leaves)"))

    def _wait_over(self) -> None:
        self._wait = None
        self._waited_out = True
        self._check()

    def _grace_over(self) -> None:
        self._grace = None
        self._alone = True
        self._check()

    def _time_up(self) -> None:
        limit = format_duration(self.opts.max_duration or 0)
        self._end(Ending.because(f"the time limit ({limit}, --max-duration) ran out", TimeLimit))

    def _look(self) -> None:
        """A look at the continue file every CONTINUE_POLL s: one lstat() in a directory of our
        own (the standard library has no portable way to be told of a new file), off the hot
        path and cheaper than a thread to do it in."""
        self._poll = None
        path = self.continue_file
        if path is None or (self.ended is not None and self.ended.done()):
            return
        if os.path.lexists(path):
            self._end(Ending.because("continued from the shared shell (beach continue)"))
            return
        self._poll = asyncio.get_running_loop().call_later(CONTINUE_POLL, self._look)

    def _end(self, ending: Ending) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(ending)
