"""A joiner on a slow link (1 Mbit/s, shaped with tc inside a network namespace) never slows the
host, and is brought to the current screen instead of being fed an ever-growing backlog."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BEACH, Procs, shell_ready, start_host
from netns import Net, network, sh
from oracle import Window, check

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture
def net() -> Iterator[Net]:
    with network("tc") as n:
        yield n


FAST = {"maxread": 65536, "searchwindowsize": 4096}


def slow_link(net: Net, rate: str) -> tuple[str, str, str]:
    """Host and joiner namespaces; everything from the host to the joiner squeezes through
    `rate`. Returns the host's namespace, the joiner's, and the host's address."""
    host_ns, join_ns = net.ns("host"), net.ns("join")
    host_dev, _ = net.link(host_ns, "10.78.0.1/24", join_ns, "10.78.0.2/24")
    shape = ("tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")
    sh(*net.exec(host_ns), "tc", "qdisc", "add", "dev", host_dev, "root", *shape)
    return host_ns, join_ns, "10.78.0.1"


def noise(path: Path, lines: int) -> Path:
    """Output that compresses poorly: ~100 bytes a line."""
    with path.open("w") as f:
        for i in range(lines):
            f.write(f"{i:06d} {os.urandom(48).hex()}\n")
    return path


def share(
    procs: Procs,
    tmp_path: Path,
    net: Net,
    host_ns: str,
    join_ns: str,
    addr: str,
    global_opts: tuple[str, ...] = (),
):
    srv = procs.start([*net.exec(host_ns), BEACH, "serve", "--host", addr, "--port", "0"])
    srv.expect(r"listening on (ws://\S+)")
    cast = tmp_path / "s.cast"
    host, info = start_host(
        procs,
        tmp_path,
        srv.child.match.group(1),
        "--record",
        str(cast),
        global_opts=global_opts,
        wrap=net.exec(host_ns),
        cols=80,
        rows=24,
        **FAST,
    )
    shell_ready(host)
    joiner = procs.start(
        [*net.exec(join_ns), BEACH, *info["join_command"][1:]], cols=80, rows=24, **FAST
    )
    shell_ready(joiner)
    return host, joiner, cast


def test_slow_link_joiner_gets_the_present_not_the_backlog(procs: Procs, tmp_path, net: Net):
    host_ns, join_ns, addr = slow_link(net, "1mbit")
    big = noise(tmp_path / "noise.txt", 160_000)  # ~16 MB: far more than the link can carry
    host, joiner, cast = share(procs, tmp_path, net, host_ns, join_ns, addr)
    window = Window(joiner, 80, 24)

    host.send(f"cat {big}; echo done-$((6*7))\r")
    # Both terminals are read all along, so only the link is slow (an unread terminal would
    # stall the joiner by itself), and the joiner's output so far is really in its transcript.
    deadline = time.monotonic() + 60
    while not host.read_for(0.1, until="done-42"):
        assert time.monotonic() < deadline, "the host never got through the output"
        assert not joiner.read_for(0.02, until="done-42"), "the joiner was never behind"
    # The host is through while the joiner, megabytes behind on a 1 Mbit/s link, is not: what
    # it has shown by now stops short of the end. (Not "for a while longer": the fresh screen
    # that skips the backlog comes about 0.3 s after the output ends, sooner than the host's
    # own terminal is seen to be through, now and then.)
    assert "done-42" not in joiner.transcript.getvalue(), "the joiner kept up with the host"
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


def test_a_backlog_the_link_cannot_deliver_soon_is_skipped_however_small(
    procs: Procs, tmp_path: Path, net: Net
) -> None:
    # 2 MB, written at about 1 MB/s (no flood: it could be read), is far under the 4 MiB a
    # joiner may fall behind by, but a 1 Mbit/s link needs seconds for it: the host judges by
    # the link's pace and skips to the present.
    host_ns, join_ns, addr = slow_link(net, "1mbit")
    burst = noise(tmp_path / "burst.txt", 12_000)
    log = tmp_path / "host.log"
    host, joiner, cast = share(
        procs,
        tmp_path,
        net,
        host_ns,
        join_ns,
        addr,
        global_opts=("--log-file", str(log), "--log-level", "info"),
    )
    window = Window(joiner, 80, 24)
    # The pace is learnt from what the link carries: first a screenful it can take at once.
    host.send(f"head -c 200000 {burst}; echo warm-$((6*7))\r")
    host.expect("warm-42")
    joiner.expect("warm-42", timeout=30)
    rounds = 16  # long enough that what the skip saves dwarfs what went out before it
    paced = f"for i in $(seq {rounds}); do head -c 120000 {burst}; sleep 0.1; done"
    host.send(f"{paced}; echo done-$((6*7))\r")
    host.expect("done-42")
    shell_ready(host)
    joiner.expect("done-42", timeout=60)
    shell_ready(joiner)
    check(cast, window, tail=64 * 1024)
    said = log.read_text()
    assert re.search(r"s behind on a path taking \d+ kB/s .*sending a fresh screen", said), said
    assert "bytes behind" not in said and "floods" not in said  # not size nor flood: the pace
    sent = len(joiner.transcript.getvalue().split("warm-42", 1)[1])
    assert sent < rounds * 120_000 / 2, sent
    host.send("exit\r")
    assert host.exit_code() == 0
    assert joiner.exit_code() == 0
