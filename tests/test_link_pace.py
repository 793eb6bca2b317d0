"""The pace a path is judged by (link/pace.py): its delivery rate and round trip, learnt from
what the path takes and from PONGs, which a peer controls and may forge."""

from __future__ import annotations

import time

import pytest

from beach_cli.link import base
from beach_cli.link.pace import RTT_MAX, Pace
from beach_cli.wire.frames import Frame, encode_frame


def test_a_busy_interval_measures_the_rate() -> None:
    pace = Pace()
    pace.sample(0.0, taken=0, pending=500_000)
    pace.sample(1.0, taken=100_000, pending=400_000)  # never ran dry: 100 kB/s
    assert pace.rate == pytest.approx(100_000)
    pace.sample(2.0, taken=300_000, pending=200_000)  # faster now: the average follows
    assert 100_000 < pace.rate < 200_000
    assert pace.seconds_for(pace.rate) == pytest.approx(1.0)


def test_an_interval_that_ran_dry_only_raises_the_rate() -> None:
    pace = Pace()
    pace.sample(0.0, taken=0, pending=50)
    pace.sample(1.0, taken=50, pending=0)  # an echo, taken at once and seen a second later
    assert pace.rate is None  # says nothing of the path
    pace.sample(1.0, taken=50, pending=300_000)
    pace.sample(2.0, taken=150_050, pending=150_000)  # busy throughout: 150 kB/s
    assert pace.rate == pytest.approx(150_000)
    pace.sample(2.5, taken=300_050, pending=0)  # took all it had: at least 300 kB/s
    assert pace.rate == pytest.approx(300_000)
    pace.sample(3.0, taken=300_050, pending=1_000)
    pace.sample(4.0, taken=301_050, pending=0)  # waited on us again, slowly: not slower
    assert pace.rate == pytest.approx(300_000)


def test_the_rate_is_measured_from_when_the_path_last_took_a_message() -> None:
    # A path takes whole messages: 64 kB every half second is 128 kB/s, however often we look.
    pace = Pace()
    pace.sample(0.0, taken=0, pending=640_000)
    for i in range(1, 50):
        pace.sample(i * 0.05, taken=65_536 * (i // 10), pending=640_000)
    assert pace.rate == pytest.approx(65_536 / 0.5, rel=0.01)


def test_an_unknown_pace_judges_nothing() -> None:
    assert Pace().seconds_for(10**9) is None
    assert Pace().rtt is None


def test_the_round_trip_is_the_least_of_the_recent_ones_and_forgeries_are_ignored() -> None:
    pace = Pace()
    for rtt in (0.3, 0.1, 0.2):  # one PING waited behind output: the least is the path's
        pace.round_trip(rtt)
    assert pace.rtt == pytest.approx(0.1)
    for forged in (-5.0, RTT_MAX + 1, 1e30):
        pace.round_trip(forged)
    assert pace.rtt == pytest.approx(0.1)


class _Path(base.Link):
    """A Link whose path takes nothing until told to: just enough to drive the shared code."""

    def __init__(self) -> None:
        super().__init__(lambda kind, body: None, "test")
        self.held = 0
        self.low = 0

    def _transmit(self, frame: bytes) -> None:
        self.held += len(frame)

    @property
    def buffered(self) -> int:
        return self.held

    @property
    def usable(self) -> bool:
        return True

    def _set_low_water(self, nbytes: int) -> None:
        self.low = nbytes

    async def _shutdown(self) -> None:
        pass


def test_a_pong_answering_our_ping_gives_the_round_trip_and_a_forged_one_does_not() -> None:
    path = _Path()
    ping = time.monotonic_ns().to_bytes(base.PING_BYTES, "big")
    path._received(encode_frame(Frame.PONG, ping))
    assert path.pace.rtt is not None and 0 <= path.pace.rtt < 1.0
    path.pace = Pace()
    for body in (bytes(8), b"\xff" * 8, b"short", b"x" * 4000):  # not a time of ours
        path._received(encode_frame(Frame.PONG, body))
    assert path.pace.rtt is None


def test_the_high_water_mark_follows_the_pace_within_bounds() -> None:
    path = _Path()
    assert path.high_water == base.FIRST_HIGH_WATER
    path.pace.rate = 100_000.0  # 0.8 Mbit/s: a tenth of a second is less than the floor
    assert path.high_water == base.MIN_HIGH_WATER
    path.pace.rate = 5_000_000.0
    assert path.high_water == 500_000
    path.pace.rate = 1e12  # however fast, never more than the ceiling
    assert path.high_water == base.HIGH_WATER
    path._measure()
    assert path.low == base.HIGH_WATER // 4  # the path is told when to say it drained


def test_a_slow_path_stops_taking_output_sooner() -> None:
    path = _Path()
    path.pace.rate = 100_000.0
    for _ in range(1_000):
        path.send(encode_frame(Frame.OUTPUT, bytes(4096)))
        if not path._writable.is_set():  # the sender would wait for `writable` now
            break
    assert base.MIN_HIGH_WATER < path.buffered < base.MIN_HIGH_WATER + 8192


def test_a_slow_path_is_handed_smaller_frames() -> None:
    path = _Path()
    assert path.frame_size(65536) == 65536  # pace unknown
    path.pace.rate = 250_000.0  # 2 Mbit/s: 50 ms of it
    assert path.frame_size(65536) == 12_500
    path.pace.rate = 1_000.0
    assert path.frame_size(65536) == base.MIN_FRAME
    path.pace.rate = 1e9
    assert path.frame_size(65536) == 65536
