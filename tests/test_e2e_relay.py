"""When no peer-to-peer path exists (UDP blocked entirely), the session falls back to a relay
through `beach serve`, still sealed end to end: the server sees ciphertext only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BEACH, Procs, shell_ready, start_host
from netns import Net, network

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

HERE = Path(__file__).parent


@pytest.fixture
def net() -> Iterator[Net]:
    with network("iptables") as n:
        yield n


def test_udp_blocked_falls_back_to_a_sealed_server_relay(procs: Procs, tmp_path, net: Net):
    host_ns, join_ns = net.ns("host"), net.ns("join")
    net.link(host_ns, "10.79.0.1/24", join_ns, "10.79.0.2/24")
    net.block_udp(join_ns)  # the joiner's network lets no UDP through at all
    record = tmp_path / "server.log"
    srv = procs.start(
        [
            *net.exec(host_ns),
            sys.executable,
            str(HERE / "recording_server.py"),
            "10.79.0.1",
            str(record),
        ]
    )
    srv.expect(r"listening on (ws://\S+)")
    host, info = start_host(
        procs,
        tmp_path,
        srv.child.match.group(1),
        wrap=net.exec(host_ns),
        global_opts=("--log-file", str(tmp_path / "host.log"), "--log-level", "debug"),
    )
    shell_ready(host)
    joiner = procs.start([*net.exec(join_ns), BEACH, *info["join_command"][1:]])
    joiner.expect("server relay", timeout=40)  # the joiner says which path it uses
    shell_ready(joiner)
    host.expect("via the server")  # and the host knows

    joiner.send("echo relayed-$((11*11)) | tr a-z A-Z\r")
    for p in (host, joiner):
        p.expect("RELAYED-121")
    host.send("exit 6\r")
    assert joiner.exit_code() == 6
    assert host.exit_code() == 6

    messages = [json.loads(line) for line in record.read_text().splitlines()]
    relayed = [m for m in messages if m.get("type") == "relay"]
    assert len(relayed) > 10  # the terminal really went through the server...
    seen = record.read_text()
    for secret in ("RELAYED-121", "relayed-", "tr a-z A-Z"):
        assert secret not in seen  # ...as ciphertext only
