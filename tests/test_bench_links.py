"""The benchmark's shaped links (bench/links/) are what they claim: the delay bridge adds the
profile's round trip, tbf holds the rate, the loss profile loses frames, and nothing is left
behind, also when the code using the link fails. Only bounds a busy machine cannot break are
asserted (a loaded machine makes round trips longer and rates lower, never the reverse)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.links import quality  # noqa: E402
from bench.links.net import Link, shaped  # noqa: E402
from bench.links.profiles import BROADBAND, Profile  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture(autouse=True)
def tools() -> None:
    for program in ("ip", "tc", "ethtool"):
        need(program)
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("network namespace tests need root in CI")
        pytest.skip("network namespaces need root")


def namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def test_broadband_link_has_its_round_trip_and_rate() -> None:
    with shaped(BROADBAND) as link:
        q = quality.measure(link, pings=10, bulk_seconds=1.0)
        names = {link.host, link.middle, link.joiner}
        assert names <= namespaces()
    assert q.lost == 0
    assert q.rtt_min_ms >= BROADBAND.rtt_ms  # the bridge holds each frame half of it, each way
    assert q.rtt_p50_ms < BROADBAND.rtt_ms + 30, q  # and not wildly more on a quiet-ish machine
    for rate in (q.down_mbit, q.up_mbit):
        assert rate <= BROADBAND.mbit * 1.05, q
        assert rate > 0
    assert q.bridge["down"]["bytes"] > 1e6 and q.bridge["up"]["bytes"] > 1e6
    assert not names & namespaces()


def test_loss_profile_loses_frames_both_ways() -> None:
    lossy = Profile("lossy", 2.0, 100.0, 0.2)
    with shaped(lossy) as link:
        q = quality.measure(link, pings=10, bulk_seconds=0.5)
    assert q.bridge["down"]["lost"] > 0 and q.bridge["up"]["lost"] > 0


def test_everything_is_removed_when_the_user_of_a_link_fails() -> None:
    before = namespaces()
    made: list[tuple[Link, subprocess.Popen[bytes]]] = []
    with pytest.raises(RuntimeError, match="leg failed"), shaped(BROADBAND) as link:
        # Something left running inside the link, as a leg that timed out would leave it.
        made.append((link, subprocess.Popen([*link.exec("host"), "sleep", "600"])))
        raise RuntimeError("leg failed")
    link, straggler = made[0]
    assert link.bridge is None
    assert namespaces() <= before
    assert straggler.wait(5) == -9  # killed when its namespace was removed
