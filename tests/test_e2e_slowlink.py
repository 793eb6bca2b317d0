"""A joiner on a slow link (1 Mbit/s, shaped with tc inside a network namespace) never slows the
host, and is brought to the current screen instead of being fed an ever-growing backlog."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from conftest import BEACH, Procs, shell_ready, start_host
from netns import Net, network, sh
from oracle import Window, check

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture
def net() -> Iterator[Net]:
    with network("tc") as n:
        yield n


def test_slow_link_joiner_gets_the_present_not_the_backlog(procs: Procs, tmp_path, net: Net):
    host_ns, join_ns = net.ns("host"), net.ns("join")
    host_dev, _ = net.link(host_ns, "10.78.0.1/24", join_ns, "10.78.0.2/24")
    # Everything from the host to the joiner squeezes through 1 Mbit/s.
    sh(
        *net.exec(host_ns),
        "tc",
        "qdisc",
        "add",
        "dev",
        host_dev,
        "root",
        "tbf",
        "rate",
        "1mbit",
        "burst",
        "32kbit",
        "latency",
        "400ms",
    )
    big = tmp_path / "noise.txt"
    with big.open("w") as f:  # ~16 MB that compresses poorly: far more than the link can carry
        for i in range(160_000):
            f.write(f"{i:06d} {os.urandom(48).hex()}\n")
    fast = {"maxread": 65536, "searchwindowsize": 4096}
    srv = procs.start([*net.exec(host_ns), BEACH, "serve", "--host", "10.78.0.1", "--port", "0"])
    srv.expect(r"listening on (ws://\S+)")
    cast = tmp_path / "s.cast"
    host, info = start_host(
        procs,
        tmp_path,
        srv.child.match.group(1),
        "--record",
        str(cast),
        wrap=net.exec(host_ns),
        cols=80,
        rows=24,
        **fast,
    )
    shell_ready(host)
    joiner = procs.start(
        [*net.exec(join_ns), BEACH, *info["join_command"][1:]], cols=80, rows=24, **fast
    )
    shell_ready(joiner)
    window = Window(joiner, 80, 24)

    host.send(f"cat {big}; echo done-$((6*7))\r")
    # Both terminals are read all along, so only the link is slow (an unread terminal would
    # stall the joiner by itself), and the joiner's output so far is really in its transcript.
    deadline = time.monotonic() + 60
    while not host.read_for(0.1, until="done-42"):
        assert time.monotonic() < deadline, "the host never got through the output"
        assert not joiner.read_for(0.02, until="done-42"), "the joiner was never behind"
    # The host is through while the joiner, megabytes behind on a 1 Mbit/s link, cannot be:
    # what it has shown by now (read for a moment longer) stops well short of the end.
    assert not joiner.read_for(0.5, until="done-42"), "the joiner kept up with the host"
    assert "done-42" not in joiner.transcript.getvalue()
    shell_ready(host)
    # It skips the backlog and lands on the present...
    joiner.expect("done-42", timeout=90)
    shell_ready(joiner)
    check(cast, window, tail=64 * 1024)
    # ...having been sent far less than the whole stream (the backlog was dropped, a fresh
    # screen sent instead).
    host_bytes, joiner_bytes = len(host.transcript.getvalue()), len(joiner.transcript.getvalue())
    assert joiner_bytes < host_bytes / 2, (joiner_bytes, host_bytes)
    host.send("exit\r")
    assert host.exit_code() == 0
    assert joiner.exit_code() == 0
