"""Several `beach serve` processes sharing sessions through a real Redis: a host registered on
one instance and joiners arriving at others find each other; when the host's instance dies the
host moves to another and the session carries on."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest
from conftest import BEACH, Proc, Procs, free_port, need, shell_ready, start_host, start_join

pytestmark = pytest.mark.e2e


def health(url: str) -> tuple[int, dict]:
    http = url.replace("ws://", "http://").replace("/ws", "/healthz")
    try:
        with urllib.request.urlopen(http, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def serve(procs: Procs, redis_url: str) -> tuple[Proc, str]:
    p = procs.start([BEACH, "serve", "--host", "127.0.0.1", "--port", "0", "--redis", redis_url])
    p.expect(r"listening on (ws://\S+)")
    return p, p.child.match.group(1)


def via(info: dict, server: str) -> dict:
    """The same join command, pointed at another instance."""
    cmd = list(info["join_command"])
    cmd[cmd.index("--server") + 1] = server
    return {**info, "join_command": cmd}


def test_sessions_span_instances_and_survive_one_dying(procs: Procs, tmp_path) -> None:
    port = free_port()
    redis = procs.start(
        [
            need("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
    )
    redis.expect("Ready to accept connections")
    redis_url = f"redis://127.0.0.1:{port}/0"
    (s1, url1), (_, url2), (_, url3) = (serve(procs, redis_url) for _ in range(3))

    host, info = start_host(procs, tmp_path, f"{url1},{url2}")
    shell_ready(host)
    assert info["server"] == url1
    a = start_join(procs, via(info, url2))  # the host is on instance 1, this joiner on 2
    shell_ready(a)
    a.send("echo cross-$((5*5))\r")
    host.expect("cross-25")
    a.expect("cross-25")
    status, body = health(url2)
    assert status == 200 and body["redis"] == "ok"

    s1.child.kill(signal.SIGKILL)  # the host's instance dies
    assert s1.exit_code() == 128 + signal.SIGKILL
    host.expect("reconnected to the server", timeout=30)  # ...on instance 2, same session
    a.send("echo still-$((6*6))\r")  # the peer-to-peer session never noticed
    host.expect("still-36")

    b = start_join(procs, via(info, url3))  # same token, through yet another instance
    shell_ready(b)
    b.send("echo third-$((7*7))\r")
    for p in (host, a, b):
        p.expect("third-49")

    redis.child.kill(signal.SIGTERM)
    redis.expect("ready to exit")  # a clean shutdown, and it is over before the health check
    assert redis.exit_code() == 0
    status, body = health(url3)
    assert status == 503 and body["redis"] == "unreachable"

    host.send("exit 2\r")
    for p in (host, a, b):
        assert p.exit_code() == 2
