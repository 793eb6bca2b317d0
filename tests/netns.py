"""Test networks on this machine: network namespaces joined by veth pairs. Traffic stays inside
the namespaces a test creates, and everything is removed afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import need


def require_root_tools(*programs: str) -> None:
    for program in ("ip", *programs):
        need(program)
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("network namespace tests need root in CI")
        pytest.skip("network namespaces need root")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


class Net:
    """Namespaces and links, with names unique to this test run."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self._plugs = 0

    def ns(self, role: str) -> str:
        name = f"bch-{role}-{self.tag}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_addr: str, b: str, b_addr: str) -> tuple[str, str]:
        """A veth pair between namespaces a and b with the given CIDR addresses."""
        ia, ib = (
            f"v{len(self.namespaces)}a{self.tag}"[:15],
            f"v{len(self.namespaces)}b{self.tag}"[:15],
        )
        sh("ip", "link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib, "netns", b)
        sh("ip", "-n", a, "addr", "add", a_addr, "dev", ia)
        sh("ip", "-n", b, "addr", "add", b_addr, "dev", ib)
        sh("ip", "-n", a, "link", "set", ia, "up")
        sh("ip", "-n", b, "link", "set", ib, "up")
        return ia, ib

    def bridge(self, ns: str, addr: str) -> str:
        """A bridge (a network segment) inside `ns`, with `ns`'s own address on it."""
        name = f"br{self.tag}"[:15]
        sh("ip", "-n", ns, "link", "add", name, "type", "bridge")
        sh("ip", "-n", ns, "addr", "add", addr, "dev", name)
        sh("ip", "-n", ns, "link", "set", name, "up")
        return name

    def plug(self, ns: str, addr: str, bridge_ns: str, bridge: str) -> str:
        """Connect `ns` to a bridge in `bridge_ns`; returns the interface name inside `ns`."""
        self._plugs += 1
        inner, outer = f"p{self._plugs}i{self.tag}"[:15], f"p{self._plugs}o{self.tag}"[:15]
        sh(
            "ip",
            "link",
            "add",
            inner,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            outer,
            "netns",
            bridge_ns,
        )
        sh("ip", "-n", ns, "addr", "add", addr, "dev", inner)
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", bridge_ns, "link", "set", outer, "master", bridge)
        sh("ip", "-n", bridge_ns, "link", "set", outer, "up")
        return inner

    @staticmethod
    def default_route(ns: str, via: str) -> None:
        sh("ip", "-n", ns, "route", "add", "default", "via", via)

    @staticmethod
    def nat(router: str, public_dev: str, symmetric: bool) -> None:
        """Make `router` a NAT to the outside through `public_dev`. Linux's MASQUERADE keeps a
        mapping per inside address and port (endpoint-independent, so STUN works);
        --random-fully picks a new port per destination (symmetric: only TURN gets through)."""
        sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Like a home router, accept nothing unsolicited from outside. (Dropped before it is
        # confirmed, such a packet also leaves no conntrack entry that would steal the port
        # the inside host is about to use when it punches its own hole.)
        sh(
            "ip",
            "netns",
            "exec",
            router,
            "iptables",
            "-A",
            "INPUT",
            "-i",
            public_dev,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        )
        rule = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", public_dev, "-j", "MASQUERADE"]
        sh("ip", "netns", "exec", router, *rule, *(["--random-fully"] if symmetric else []))

    @staticmethod
    def exec(ns: str) -> list[str]:
        """Prefix for running a command inside `ns`."""
        return ["ip", "netns", "exec", ns]

    @staticmethod
    def _drop_rules(ns: str, dev: str, action: str) -> None:
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            sh("ip", "netns", "exec", ns, "iptables", action, chain, flag, dev, "-j", "DROP")

    @staticmethod
    def block_udp(ns: str) -> None:
        """A network that lets no UDP through at all, either way (STUN, TURN and ICE fail)."""
        for chain in ("INPUT", "OUTPUT"):
            sh("ip", "netns", "exec", ns, "iptables", "-A", chain, "-p", "udp", "-j", "DROP")

    def drop_all(self, ns: str, dev: str) -> None:
        """Silently lose every packet through `dev`, both ways (the link stays up)."""
        self._drop_rules(ns, dev, "-I")

    def restore(self, ns: str, dev: str) -> None:
        self._drop_rules(ns, dev, "-D")

    def close(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@contextmanager
def network(*programs: str) -> Iterator[Net]:
    """A fresh set of namespaces for one test, removed afterwards; `programs` must exist."""
    require_root_tools(*programs)
    net = Net()
    try:
        yield net
    finally:
        net.close()
