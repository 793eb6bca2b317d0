"""A hostile client against the server's session registry: adopting a session after a server
restart, flooding a session's joins, probing for live session ids, and the mirrors a Redis
cluster keeps for joiners. Real `beach serve` processes (and `beach host`/`beach join` where
the host's or joiner's side matters); the attackers are WebSockets speaking beach's protocol
from chosen loopback addresses (127.0.0.x all reach the loopback interface on Linux)."""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import (
    BEACH,
    Procs,
    beach_env,
    free_port,
    need,
    shell_ready,
    start_host,
    start_join,
)
from serve_process import ServeProcess
from wsconn import Conn

from beach_cli.wire.ids import ALPHABET
from beach_cli.wire.signaling import E_RATE_LIMITED, E_TOO_MANY, E_UNKNOWN_SESSION

pytestmark = pytest.mark.e2e

T = 10.0  # seconds allowed for any single network step
LOCAL = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------


class Ws(Conn):
    """One WebSocket to `beach serve` from a chosen source address."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws, T)
        self.http = http


class Clients:
    """Opens WebSockets from any loopback address and closes them all at the end."""

    def __init__(self) -> None:
        self._http: dict[str, aiohttp.ClientSession] = {}
        self.all: list[Ws] = []

    async def open(self, url: str, source: str = LOCAL) -> Ws:
        http = self._http.get(source)
        if http is None:
            connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
            http = self._http[source] = aiohttp.ClientSession(connector=connector)
        ws = Ws(http, await asyncio.wait_for(http.ws_connect(url), T))
        self.all.append(ws)
        await ws.expect("welcome")
        return ws

    async def host(self, url: str, source: str = LOCAL, **fields: Any) -> tuple[Ws, dict]:
        ws = await self.open(url, source)
        await ws.send("host", **fields)
        return ws, await ws.recv()

    async def aclose(self) -> None:
        for ws in self.all:
            if not ws.ws.closed:
                await asyncio.wait_for(ws.ws.close(), T)
        for http in self._http.values():
            await http.close()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    c = Clients()
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def serves() -> Any:
    started: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        p = ServeProcess("--host", LOCAL, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def made_up_ticket() -> str:
    """What an attacker can offer: 64 characters of the ticket alphabet, not signed."""
    return secrets.token_urlsafe(48)[:64]


def metric(url: str, name: str) -> float:
    http = url.replace("ws://", "http://").replace("/ws", "/metrics")
    with urllib.request.urlopen(http, timeout=T) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


# ---------------------------------------------------------------------------------------------
# 1. Adoption after a restart needs the ticket the server signed
# ---------------------------------------------------------------------------------------------


def test_a_restarted_server_gives_a_session_only_to_its_real_host(
    procs: Procs, tmp_path: Path
) -> None:
    """`beach serve` is killed and restarted with its state file while a real session runs.
    An attacker who knows the session id (it is in every token) tries to adopt it with a
    made-up key before the host is back, and again after: refused both times, with the same
    answer, and it never hears of a joiner. The host comes back with its ticket and a new
    joiner with the printed token gets in."""
    port = free_port()
    state = tmp_path / "serve-state.json"
    argv = [BEACH, "serve", "--host", LOCAL, "--port", str(port), "--state-file", str(state)]
    srv = procs.start(argv)
    srv.expect("listening")
    assert state.stat().st_mode & 0o777 == 0o600
    url = f"ws://{LOCAL}:{port}/ws"
    host, info = start_host(procs, tmp_path, url)
    shell_ready(host)
    first = start_join(procs, info)
    shell_ready(first)
    sid = info["session"]

    srv.child.kill(signal.SIGKILL)
    assert srv.exit_code() == 128 + signal.SIGKILL
    srv2 = procs.start(argv)
    srv2.expect("listening")

    async def attack() -> tuple[list[dict], list[dict]]:
        c = Clients()
        try:
            squatter, answer = await c.host(url, "127.0.0.9", session=sid, reclaim=made_up_ticket())
            host.expect("reconnected to the server", timeout=30)
            late, again = await c.host(url, "127.0.0.9", session=sid, reclaim=made_up_ticket())
            joiner = await asyncio.to_thread(start_join, procs, info)
            await asyncio.to_thread(shell_ready, joiner)
            return [answer, *await squatter.heard(1.0)], [again, *await late.heard(0.5)]
        finally:
            await c.aclose()

    before, after = asyncio.run(attack())
    for heard in (before, after):
        assert heard[0]["type"] == "error" and heard[0]["code"] == E_UNKNOWN_SESSION, heard
        assert heard[0]["message"] == f"session {sid} cannot be reclaimed"
        assert not [m for m in heard if m["type"] == "peer_joined"], heard  # never a joiner
    first.send("echo same-session-$((6*7))\r")
    host.expect("same-session-42")
    host.send("exit 3\r")
    assert host.exit_code() == 3


async def test_a_ticket_survives_a_restart_with_its_key_and_only_with_it(
    serves: Any, clients: Clients, tmp_path: Path
) -> None:
    state, other = tmp_path / "state.json", tmp_path / "other.json"
    one = serves("--port", "0", "--state-file", str(state))
    _, reg = await clients.host(one.url)
    assert reg["type"] == "registered", reg
    sid, ticket = reg["session"], reg["reclaim"]
    assert len(ticket) <= 64
    one.stop()

    same = serves("--port", "0", "--state-file", str(state))  # restarted, same key
    back, again = await clients.host(same.url, session=sid, reclaim=ticket)
    assert (again["type"], again["session"], again["reclaim"]) == ("registered", sid, ticket)
    # The re-created session is the one joiners reach.
    joiner = await clients.open(same.url, "127.0.0.2")
    await joiner.send("join", session=sid)
    peer = (await joiner.expect("joined", session=sid))["peer"]
    await back.expect("peer_joined", peer=peer)
    # A ticket for one id does not open another.
    _, moved = await clients.host(same.url, "127.0.0.3", session="zzzzzz", reclaim=ticket)
    assert (moved["type"], moved["code"]) == ("error", E_UNKNOWN_SESSION), moved
    same.stop()

    stranger = serves("--port", "0", "--state-file", str(other))  # another key
    _, refused = await clients.host(stranger.url, session=sid, reclaim=ticket)
    assert refused == {
        "type": "error",
        "v": 1,
        "code": E_UNKNOWN_SESSION,
        "message": f"session {sid} cannot be reclaimed",
    }


async def test_adoption_counts_against_the_per_address_session_cap(
    serves: Any, clients: Clients, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    one = serves("--port", "0", "--state-file", str(state))
    tickets = []
    for i in range(3):
        _, reg = await clients.host(one.url, f"127.0.0.{10 + i}")
        tickets.append((reg["session"], reg["reclaim"]))
    one.stop()

    capped = serves("--port", "0", "--state-file", str(state), "--max-sessions-per-address", "2")
    answers = []
    for sid, ticket in tickets:  # all three come back from one address
        _, answer = await clients.host(capped.url, "127.0.0.20", session=sid, reclaim=ticket)
        answers.append((answer["type"], answer.get("code")))
    assert answers == [("registered", None), ("registered", None), ("error", E_TOO_MANY)]


def test_cluster_instances_must_share_the_ticket_key(procs: Procs, tmp_path: Path) -> None:
    redis_url = start_redis(procs)
    serve = [BEACH, "serve", "--host", LOCAL, "--port", "0", "--redis", redis_url]
    first = procs.start([*serve, "--state-file", str(tmp_path / "a.json")])
    first.expect("listening")
    odd = procs.start([*serve, "--state-file", str(tmp_path / "b.json")])
    odd.expect("another key than the cluster")
    assert odd.exit_code() == 1


# ---------------------------------------------------------------------------------------------
# 6. One address cannot spend a session's join budget; the host hears of refused joins
# ---------------------------------------------------------------------------------------------


async def flood_joins(clients: Clients, url: str, sid: str, source: str, n: int) -> list[str]:
    """`n` bare joins of `sid`, eight at once, each on its own connection (closed once
    answered): their answers' types or error codes."""
    answers: list[str] = []
    for start in range(0, n, 8):
        conns = await asyncio.gather(*(clients.open(url, source) for _ in range(start, n)[:8]))
        await asyncio.gather(*(c.send("join", session=sid) for c in conns))
        answers += [
            a.get("code", a["type"]) for a in await asyncio.gather(*(c.recv() for c in conns))
        ]
        await asyncio.gather(*(c.close() for c in conns))
    return answers


async def refused_notices(host: Ws, total: int, timeout: float = 15.0) -> list[dict]:
    """What the host hears until `joins_refused` notices have counted `total` refusals."""
    heard: list[dict] = []
    deadline = time.monotonic() + timeout
    counted = 0
    while counted < total and (left := deadline - time.monotonic()) > 0:
        msg = await host.recv(left)
        heard.append(msg)
        counted += msg["count"] if msg["type"] == "joins_refused" else 0
    return heard


async def test_a_join_flood_from_one_address_locks_out_nobody_else(
    serves: Any, clients: Clients
) -> None:
    srv = serves("--port", "0")  # default budgets: 10 a minute per address, 60 per session
    host, reg = await clients.host(srv.url)
    sid = reg["session"]

    answers = await flood_joins(clients, srv.url, sid, "127.0.0.2", 40)
    assert answers.count("joined") in (10, 11), answers  # (one more if 6 s went by)
    limited = answers.count(E_RATE_LIMITED)
    assert limited + answers.count("joined") == 40, answers

    # Someone else, from another address, still gets in.
    joiner = await clients.open(srv.url, "127.0.0.3")
    await joiner.send("join", session=sid)
    peer = (await joiner.expect("joined", session=sid))["peer"]

    # The host was told, with counts: a notice at once, then at most one every 5 s.
    heard = await refused_notices(host, limited)
    refused = [m for m in heard if m["type"] == "joins_refused"]
    assert all(m["code"] == E_RATE_LIMITED for m in refused), heard
    assert sum(m["count"] for m in refused) == limited and len(refused) <= 3, refused
    assert peer in {m["peer"] for m in heard if m["type"] == "peer_joined"}


def test_a_real_joiner_gets_in_while_another_address_floods(procs: Procs, tmp_path: Path) -> None:
    srv = procs.start([BEACH, "serve", "--host", LOCAL, "--port", "0"])
    srv.expect(r"listening on (ws://\S+)")
    url = srv.child.match.group(1)
    host, info = start_host(procs, tmp_path, url)
    shell_ready(host)

    async def flood() -> list[str]:
        c = Clients()
        try:
            return await flood_joins(c, url, info["session"], "127.0.0.2", 40)
        finally:
            await c.aclose()

    answers = asyncio.run(flood())
    assert answers.count(E_RATE_LIMITED) >= 29, answers
    joiner = start_join(procs, info)  # from 127.0.0.1, with the token
    shell_ready(joiner)
    joiner.send("echo let-in-$((6*7))\r")
    host.expect("let-in-42")
    joiner.send("exit 5\r")
    assert host.exit_code() == 5


# ---------------------------------------------------------------------------------------------
# 7. Probing ids with `host{session, reclaim}`
# ---------------------------------------------------------------------------------------------


async def test_reclaim_probes_are_few_and_tell_nothing(serves: Any, clients: Clients) -> None:
    """An attacker probes ids as fast as it can; the server checks at most the failed-reclaim
    budget (5 a minute per address), and its answer for a live id is the one for a free id."""
    srv = serves("--port", "0")
    _, reg = await clients.host(srv.url)
    live = reg["session"]
    probe = await clients.open(srv.url, "127.0.0.5")
    started = time.monotonic()
    answers: list[dict] = []
    for i in range(120):  # at most 120 probes, or 20 s
        sid = live if i in (3, 60) else "".join(secrets.choice(ALPHABET) for _ in range(6))
        await probe.send("host", session=sid, reclaim=made_up_ticket())
        answers.append(await probe.recv())
        if time.monotonic() - started > 20:
            break
    elapsed = time.monotonic() - started
    checked = [a for a in answers if a.get("code") == E_UNKNOWN_SESSION]
    limited = [a for a in answers if a.get("code") == E_RATE_LIMITED]
    assert len(checked) + len(limited) == len(answers), answers  # nothing adopted, ever
    # 5 at once, then 5 a minute: within `elapsed` seconds at most this many ids were checked.
    assert len(checked) <= 5 + int(elapsed / 12) + 1, (len(checked), elapsed)
    print(f"ids checked: {len(checked)} of {len(answers)} probes in {elapsed:.1f} s")
    # The live id gets the free ids' answer.
    assert answers[3] == {
        "type": "error",
        "v": 1,
        "code": E_UNKNOWN_SESSION,
        "message": f"session {live} cannot be reclaimed",
    }
    assert all(re.fullmatch(r"session \w+ cannot be reclaimed", a["message"]) for a in checked)
    assert answers[60] == limited[-1] or answers[60]["code"] == E_RATE_LIMITED


# ---------------------------------------------------------------------------------------------
# 13. Mirrors in a Redis cluster
# ---------------------------------------------------------------------------------------------


def start_redis(procs: Procs) -> str:
    port = free_port()
    argv = [need("redis-server"), "--port", str(port), "--bind", LOCAL]
    redis = procs.start([*argv, "--save", "", "--appendonly", "no"])
    redis.expect("Ready to accept connections")
    return f"redis://{LOCAL}:{port}/0"


async def test_a_joiner_closed_from_another_instance_leaves_no_mirror(
    procs: Procs, serves: Any, clients: Clients, tmp_path: Path
) -> None:
    """The host is on instance A and drops a joiner that came through B: A tells B to close
    it (`op: close`). B must forget its mirror of the session, so that the host can move to
    B and later joiners through B reach it."""
    redis_url = start_redis(procs)
    state = str(tmp_path / "state.json")
    a = serves("--port", "0", "--redis", redis_url, "--state-file", state)
    b = serves("--port", "0", "--redis", redis_url, "--state-file", state)
    host, reg = await clients.host(a.url)
    sid, ticket = reg["session"], reg["reclaim"]

    joiner = await clients.open(b.url, "127.0.0.2")
    await joiner.send("join", session=sid)
    peer = (await joiner.expect("joined", session=sid))["peer"]
    await host.expect("peer_joined", peer=peer)
    assert metric(b.url, "beach_sessions") == 1  # B's mirror, for this joiner
    await host.send("drop", peer=peer, reason="wrong token")
    dropped = await joiner.heard(T)
    assert [m["type"] for m in dropped] == ["error"] and dropped[0]["code"] == "dropped"
    assert metric(b.url, "beach_sessions") == 0  # the mirror went with its last joiner

    # The host moves to B (a blip, a load balancer): it takes its session along ...
    await host.close()
    moved, again = await clients.host(b.url, session=sid, reclaim=ticket)
    assert (again["type"], again.get("session")) == ("registered", sid), again
    # ... and joiners through either instance reach it there.
    for url, source in ((b.url, "127.0.0.3"), (a.url, "127.0.0.4")):
        j = await clients.open(url, source)
        await j.send("join", session=sid)
        p = (await j.expect("joined", session=sid))["peer"]
        await moved.expect("peer_joined", peer=p)


@pytest.mark.parametrize(
    ("content", "mode", "says"),
    [
        ('{"version": 1, "reclaim_key": "' + "A" * 43 + '="}\n', 0o644, "others may read it"),
        ("not json\n", 0o600, "is damaged"),
    ],
)
def test_a_state_file_that_cannot_be_trusted_stops_the_server(
    tmp_path: Path, content: str, mode: int, says: str
) -> None:
    """A key others may read would let them forge tickets; a damaged one is not guessed at."""
    state = tmp_path / "state.json"
    state.write_text(content)
    state.chmod(mode)
    argv = [BEACH, "serve", "--host", LOCAL, "--port", "0", "--state-file", str(state)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=beach_env())
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and lines[0].startswith("beach: "), done.stderr
