"""A network drop between joiner and host: the joiner says it is reconnecting, comes back by
itself, shows the current screen, and no keystroke is lost or doubled."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import BEACH, Procs, shell_ready, start_host
from netns import Net, network
from oracle import Window, check

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

DROP_SECONDS = 30.0


@pytest.fixture
def net() -> Iterator[Net]:
    with network("iptables") as n:
        yield n


def test_joiner_reconnects_after_a_network_drop(procs: Procs, tmp_path, net: Net) -> None:
    host_ns, join_ns = net.ns("host"), net.ns("join")
    _, join_dev = net.link(host_ns, "10.77.0.1/24", join_ns, "10.77.0.2/24")
    srv = procs.start([*net.exec(host_ns), BEACH, "serve", "--host", "10.77.0.1", "--port", "0"])
    srv.expect(r"listening on (ws://\S+)")
    host, info = start_host(
        procs,
        tmp_path,
        srv.child.match.group(1),
        "--record",
        str(tmp_path / "s.cast"),
        wrap=net.exec(host_ns),
        cols=80,
        rows=24,
    )
    shell_ready(host)
    joiner = procs.start([*net.exec(join_ns), BEACH, *info["join_command"][1:]], cols=80, rows=24)
    shell_ready(joiner)
    window = Window(joiner, 80, 24)

    # The link goes silent (both ways), and the joiner types straight into the void.
    net.drop_all(join_ns, join_dev)
    dropped_at = time.monotonic()
    joiner.send("echo ka-$((2+3))\r")
    joiner.expect("reconnecting", timeout=15)
    host.expect(r"\w+ \(.*\) left", timeout=15)  # the host gave up on the old channel too
    remaining = DROP_SECONDS - (time.monotonic() - dropped_at)
    joiner.expect(r"reconnecting \(attempt", timeout=remaining + 10)  # still trying
    if remaining > 0:
        # The drop lasts its full length: nothing to wait for but the clock.
        time.sleep(max(DROP_SECONDS - (time.monotonic() - dropped_at), 0))
    net.restore(join_ns, join_dev)

    # Back by itself, the keystrokes typed before the drop run exactly once.
    host.expect("ka-5", timeout=30)
    joiner.expect("ka-5", timeout=30)
    shell_ready(joiner)
    joiner.send("echo after-$((3*3))\r")
    host.expect("after-9")
    joiner.expect("after-9")
    shell_ready(joiner)
    check(tmp_path / "s.cast", window)  # the joiner shows exactly the host's screen again
    host.send("exit\r")
    assert host.exit_code() == 0
    assert joiner.exit_code() == 0
    output = host.transcript.getvalue()
    assert output.count("ka-5") == 1, "the command typed before the drop ran more than once"
