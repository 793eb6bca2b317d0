"""The session's lifetime (host/lifetime.py) on its own: which ending each clock and each coming
and going leads to; and the EXIT frame's reason, which tells a joiner why the host ended it.
The end-to-end tests with real processes are in test_e2e_headless.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from beach_cli.errors import NobodyJoined, TimeLimit
from beach_cli.host import lifetime as lifetime_module
from beach_cli.host.lifetime import Ending, Lifetime
from beach_cli.host.options import HostOptions
from beach_cli.wire.frames import (
    EXIT_REASON_MAX,
    ExitStatus,
    Frame,
    decode_exit,
    decode_frame,
    encode_exit,
    exit_reason,
)

BOUND = 5.0  # seconds any ending below may take to come


class Here:
    """Stands in for the session's joiners: whether anyone is live or connecting."""

    def __init__(self) -> None:
        self.present = False

    def __call__(self) -> bool:
        return self.present


def lifetime(here: Here | None = None, **opts: object) -> Lifetime:
    lt = Lifetime(HostOptions(command=[], **opts), here or Here())  # type: ignore[arg-type]
    lt.start(None)
    return lt


async def ended(lt: Lifetime) -> Ending:
    assert lt.ended is not None
    return await asyncio.wait_for(asyncio.shield(lt.ended), BOUND)


def test_endings_say_why_with_their_exit_codes() -> None:
    assert Ending.shell(ExitStatus(3, None)) == Ending("the shared shell exited with status 3", 3)
    killed = Ending.shell(ExitStatus(129, 1))
    assert (killed.line, killed.code, killed.reason) == (
        "the shared shell was killed by SIGHUP",
        129,
        None,
    )
    ok = Ending.because("the last joiner left")
    assert (ok.line, ok.code, ok.error) == ("the last joiner left; session ended", 0, None)
    assert Ending.because("x", NobodyJoined).code == 11
    assert Ending.because("x", TimeLimit).code == 12


async def test_nobody_joining_in_time_ends_the_session() -> None:
    lt = lifetime(wait_for_joiner=0.05)
    ending = await ended(lt)
    assert ending.error is NobodyJoined and ending.code == 11
    assert ending.line == "nobody joined within 0.05s (--wait-for-joiner); session ended"
    lt.close()


async def test_a_join_in_time_cancels_the_wait() -> None:
    lt = lifetime(wait_for_joiner=3600)
    lt.joined()
    lt.gone(was_live=True, hung_up=True)  # and leaving afterwards changes nothing
    lt._wait_over()  # even were the clock to run out after all
    assert lt.ended is not None and not lt.ended.done()
    lt.close()


async def test_a_joiner_connecting_when_the_wait_runs_out_is_waited_for() -> None:
    here = Here()
    lt = lifetime(here, wait_for_joiner=3600)
    here.present = True  # proved its token, its link is being made
    lt._wait_over()
    assert lt.ended is not None and not lt.ended.done()
    here.present = False  # ...and it failed: nobody joined after all
    lt.gone(was_live=False, hung_up=False)
    assert (await ended(lt)).error is NobodyJoined
    lt.close()


async def test_max_duration_ends_the_session_whoever_is_there() -> None:
    here = Here()
    here.present = True
    lt = lifetime(here, max_duration=0.05)
    lt.joined()
    ending = await ended(lt)
    assert ending.error is TimeLimit and ending.code == 12
    assert ending.reason == "the time limit (0.05s, --max-duration) ran out"
    lt.close()


async def test_the_last_joiner_hanging_up_ends_the_session() -> None:
    here = Here()
    lt = lifetime(here, exit_when_last_leaves=True)
    lt.gone(was_live=False, hung_up=True)  # a wrong token, say: nobody had joined
    assert lt.ended is not None and not lt.ended.done()
    lt.joined()
    here.present = True  # another one is still there
    lt.gone(was_live=True, hung_up=True)
    assert not lt.ended.done()
    here.present = False
    lt.gone(was_live=True, hung_up=True)
    ending = await ended(lt)
    assert (ending.code, ending.reason) == (0, "the last joiner left (--exit-when-last-leaves)")
    lt.close()


async def test_a_last_joiner_gone_silent_has_time_to_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifetime_module, "LOST_GRACE", 3600.0)
    here = Here()
    lt = lifetime(here, exit_when_last_leaves=True)
    lt.joined()
    lt.gone(was_live=True, hung_up=False)  # a network drop: it may be reconnecting
    assert lt.ended is not None and not lt.ended.done() and lt._grace is not None
    lt.joined()  # it came back
    assert lt._grace is None and not lt.ended.done()

    monkeypatch.setattr(lifetime_module, "LOST_GRACE", 0.05)
    lt.gone(was_live=True, hung_up=False)  # gone again, and this time for good
    assert (await ended(lt)).reason == "the last joiner left (--exit-when-last-leaves)"
    lt.close()


async def test_without_the_option_the_last_joiner_leaving_ends_nothing() -> None:
    lt = lifetime()
    lt.joined()
    lt.gone(was_live=True, hung_up=True)
    assert lt.ended is not None and not lt.ended.done()
    lt.close()


async def test_the_continue_file_ends_the_session_with_exit_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifetime_module, "CONTINUE_POLL", 0.01)
    lt = Lifetime(HostOptions(command=[]), Here())
    path = tmp_path / "continue"
    lt.start(path)
    path.touch()
    ending = await ended(lt)
    assert (ending.code, ending.error) == (0, None)
    assert ending.reason == "continued from the shared shell (beach continue)"
    lt.close()


async def test_close_stops_every_clock(tmp_path: Path) -> None:
    opts = HostOptions(command=[], wait_for_joiner=1, max_duration=1, exit_when_last_leaves=True)
    lt = Lifetime(opts, Here())
    lt.start(tmp_path / "continue")
    lt.close()
    handles = [*lt._timers, lt._wait, lt._poll]
    assert all(h is not None and h.cancelled() for h in handles)
    lt.joined()
    lt.gone(was_live=True, hung_up=False)  # the joiners closed on the way out start nothing
    assert lt._grace is None and lt.ended is not None and not lt.ended.done()


def test_an_exit_frame_carries_the_reason() -> None:
    kind, body = decode_frame(encode_exit(12, None, "the time limit (1h) ran out"))
    assert kind == Frame.EXIT
    assert decode_exit(body) == (12, None)  # what a joiner without reasons reads
    assert exit_reason(body) == "the time limit (1h) ran out"
    _, plain = decode_frame(encode_exit(0, None))
    assert exit_reason(plain) is None and b"reason" not in plain


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"code": 0, "signal": null, "reason": 5}', None),
        (b'{"code": 0, "signal": null, "reason": ["x"]}', None),
        (b'{"code": 0, "signal": null, "reason": ""}', None),
        (b'{"code": 0, "signal": null, "reason": null}', None),
        (b'{"code": 0, "signal": null, "reason": "' + b"x" * 10_000 + b'"}', "x" * EXIT_REASON_MAX),
    ],
)
def test_a_hostile_exit_reason_is_dropped_or_cut(body: bytes, reason: str | None) -> None:
    assert exit_reason(body) == reason
