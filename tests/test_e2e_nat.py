"""Reach: real `beach` processes in network namespaces behind real NATs (iptables), with a real
coturn as STUN/TURN server on the "Internet" segment. Each topology connects, streams a shell,
and records its time to connect (`record_property`, and printed with -s).

    inet (203.0.113.0/24): coturn + beach serve at .10
      |-- router A .2 (NAT) -- 10.1.0.0/24 -- host  10.1.0.2
      |-- router B .3 (NAT) -- 10.2.0.0/24 -- joiner 10.2.0.2
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BEACH, Procs, need, shell_ready, start_host, wait_for_line
from netns import Net, network

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

PUBLIC = "203.0.113.10"
TURN_SECRET = "test-turn-secret"
PRIVATE_RANGES = (
    "10.0.0.0-10.255.255.255",
    "172.16.0.0-172.31.255.255",
    "192.168.0.0-192.168.255.255",
)


@pytest.fixture
def net() -> Iterator[Net]:
    with network("iptables", "turnserver") as n:
        yield n


@dataclass
class World:
    net: Net
    inet: str
    host_ns: str
    join_ns: str
    server: str


def build(net: Net, procs: Procs, tmp_path: Path, nat: str | None) -> World:
    """The Internet segment with coturn and beach serve; host and joiner behind `nat`
    ("cone", "symmetric") or, with None, both on one LAN segment."""
    inet = net.ns("inet")
    bridge = net.bridge(inet, f"{PUBLIC}/24")
    if nat is None:
        host_ns, join_ns = net.ns("host"), net.ns("join")
        net.plug(host_ns, "203.0.113.21/24", inet, bridge)
        net.plug(join_ns, "203.0.113.22/24", inet, bridge)
    else:
        sides = []
        for i, name in ((1, "host"), (2, "join")):
            router, inside = net.ns(f"r{i}"), net.ns(name)
            public_dev = net.plug(router, f"203.0.113.{i + 1}/24", inet, bridge)
            lan = net.bridge(router, f"10.{i}.0.1/24")
            net.plug(inside, f"10.{i}.0.2/24", router, lan)
            net.default_route(inside, f"10.{i}.0.1")
            net.nat(router, public_dev, symmetric=(nat == "symmetric"))
            sides.append(inside)
        host_ns, join_ns = sides
    turn_log = tmp_path / "turnserver.log"
    procs.start(
        [
            *net.exec(inet),
            need("turnserver"),
            "-n",
            f"--listening-ip={PUBLIC}",
            "--listening-port=3478",
            f"--relay-ip={PUBLIC}",
            "--min-port=49160",
            "--max-port=49400",
            "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}",
            "--realm=beach.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--fingerprint",
            # As operations.md recommends: no relaying into private networks. (Sending to an
            # unroutable peer would also make coturn drop the whole allocation.)
            *(f"--denied-peer-ip={r}" for r in PRIVATE_RANGES),
            # coturn logs to stdout as well by default; nobody reads that terminal, and once
            # it filled up coturn would block mid-session.
            "--no-stdout-log",
            f"--log-file={turn_log}",
            "--simple-log",
        ]
    )
    wait_for_line(turn_log, "IO method (admin thread)")  # the last line of its start-up
    srv = procs.start(
        [
            *net.exec(inet),
            BEACH,
            "serve",
            "--host",
            PUBLIC,
            "--port",
            "0",
            "--stun",
            f"stun:{PUBLIC}:3478",
            "--turn",
            f"turn:{PUBLIC}:3478?transport=udp",
            "--turn-secret",
            TURN_SECRET,
        ]
    )
    srv.expect(r"listening on (ws://\S+)")
    return World(net, inet, host_ns, join_ns, srv.child.match.group(1))


def connect(
    world: World,
    procs: Procs,
    tmp_path,
    record: Callable[[str, object], None],
    path: str,
    join_opts: tuple[str, ...] = (),
) -> None:
    host, info = start_host(procs, tmp_path, world.server, wrap=world.net.exec(world.host_ns))
    shell_ready(host)
    started = time.monotonic()
    joiner = procs.start(
        [*world.net.exec(world.join_ns), BEACH, *join_opts, *info["join_command"][1:]]
    )
    joiner.expect("connected, server relay", timeout=40)  # at once: the early relay
    shell_ready(joiner)
    elapsed = time.monotonic() - started
    # Then the title says where the session settled (link/handover.py).
    joiner.expect(r"beach: connected, ([a-zA-Z -]+)", timeout=40)
    seen = joiner.child.match.group(1).strip()
    record("connect_seconds", round(elapsed, 3))
    record("path", seen)
    print(f"\n{path}: connected in {elapsed:.2f} s via {seen}")
    assert seen == path
    joiner.send("echo across-$((40+2))\r")
    for p in (host, joiner):
        p.expect("across-42")
    host.send("exit 3\r")
    assert joiner.exit_code() == 3
    assert host.exit_code() == 3


def test_same_lan_connects_directly(procs: Procs, tmp_path, net: Net, record_property):
    connect(build(net, procs, tmp_path, None), procs, tmp_path, record_property, "peer-to-peer")


def test_cone_nats_connect_directly_through_stun(procs: Procs, tmp_path, net: Net, record_property):
    connect(build(net, procs, tmp_path, "cone"), procs, tmp_path, record_property, "peer-to-peer")


def test_symmetric_nats_connect_through_turn(procs: Procs, tmp_path, net: Net, record_property):
    connect(
        build(net, procs, tmp_path, "symmetric"), procs, tmp_path, record_property, "TURN relay"
    )


def test_udp_blocked_behind_a_nat_goes_to_the_server_relay_without_the_full_wait(
    procs: Procs, tmp_path, net: Net, record_property
):
    """Topology 4 in the NAT world: the joiner's network lets no UDP out at all, so neither
    STUN nor TURN answers it. Its candidates show no direct path could open, so the direct
    attempt is cut short (3 s instead of 10) before the sealed server relay."""
    world = build(net, procs, tmp_path, "cone")
    net.block_udp(world.join_ns)
    log = tmp_path / "join.log"
    connect(
        world,
        procs,
        tmp_path,
        record_property,
        "server relay",
        ("--log-file", str(log), "--log-level", "info"),
    )
    assert "no direct path looks possible" in log.read_text()
