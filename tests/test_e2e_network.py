"""Failure paths that need a network of their own: a namespace with nothing but loopback."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from conftest import BEACH, Procs, need, shell_ready, start_host

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture
def loopback_only_netns() -> Iterator[str]:
    """A network namespace whose only interface is loopback: ICE can gather no candidate."""
    ip = need("ip")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("network namespace tests need root in CI")
        pytest.skip("network namespaces need root")
    name = f"beach-{uuid.uuid4().hex[:8]}"
    subprocess.run([ip, "netns", "add", name], check=True)
    try:
        subprocess.run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], check=False)


def test_no_usable_network_path_falls_back_to_the_server_relay(
    procs: Procs, tmp_path, loopback_only_netns
):
    """No ICE candidate at all, and a connect timeout shorter than the direct attempt: the
    direct attempt still ends in the sealed server relay, never in a timeout."""
    ns = ["ip", "netns", "exec", loopback_only_netns]
    srv = procs.start([*ns, BEACH, "serve", "--host", "127.0.0.1", "--port", "0"])
    srv.expect(r"listening on (ws://\S+)")
    url = srv.child.match.group(1)
    host, info = start_host(procs, tmp_path, url, wrap=ns)
    shell_ready(host)
    cmd = info["join_command"]
    joiner = procs.start([*ns, BEACH, *cmd[1:-1], "--timeout", "3", cmd[-1]])
    joiner.expect("connected, server relay")
    shell_ready(joiner)
    joiner.send("echo relayed-$((20+1))\r")
    joiner.expect("relayed-21")
    host.expect("relayed-21")
    joiner.send("\x1dd")
    assert joiner.exit_code() == 0
    assert "Traceback" not in joiner.transcript.getvalue()
    # The host is unharmed and still accepts joiners.
    host.send("echo alive-$((20+1))\r")
    host.expect("alive-21")
    host.send("exit\r")
    assert host.exit_code() == 0
