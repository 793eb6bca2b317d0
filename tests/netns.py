"""Test networks on this machine: network namespaces joined by veth pairs. Traffic stays inside
the namespaces a test creates, and everything is removed afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid

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

    @staticmethod
    def exec(ns: str) -> list[str]:
        """Prefix for running a command inside `ns`."""
        return ["ip", "netns", "exec", ns]

    @staticmethod
    def _drop_rules(ns: str, dev: str, action: str) -> None:
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            sh("ip", "netns", "exec", ns, "iptables", action, chain, flag, dev, "-j", "DROP")

    def drop_all(self, ns: str, dev: str) -> None:
        """Silently lose every packet through `dev`, both ways (the link stays up)."""
        self._drop_rules(ns, dev, "-I")

    def restore(self, ns: str, dev: str) -> None:
        self._drop_rules(ns, dev, "-D")

    def close(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
