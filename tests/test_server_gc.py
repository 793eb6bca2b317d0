"""The server's collector policy (beach_cli/server/collector.py): what a session holds is frozen
out of the collector's reach while it lives, and given back when it ends; a cycle that a
freeze kept is found by the audit. No speed is asserted here (bench/server.py measures the
pauses).

(a) A real `beach serve`: N hosts register (some with a joiner and a relayed signal), and their
    objects are frozen; they all leave, and Python's allocator gets back nearly every block the
    sessions took (the sessions are kept for their host's grace period, a few blocks each),
    with no audit needed: nothing of an ended connection was left in a cycle. Either cycle the
    server breaks (app.py `_untie`, client.py `stop`) fails it when left in place.
(b) The audit, in this process with the real collector: cycles frozen and then dropped stay
    alive through ordinary collections, and the audit frees them.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
import weakref
from collections.abc import Callable

import aiohttp
import pytest
from serve_process import ServeProcess
from wsconn import Conn

from beach_cli.server.collector import Collector

N = 300
JOINED = 20  # of the N sessions, those that get a joiner (the join and relay paths too)
SETTLE_SECONDS = 20.0  # for the server to freeze, or to free, what it should
SERVE_ARGS = (
    *("--host", "127.0.0.1", "--port", "0"),
    # Every connection here comes from 127.0.0.1.
    *("--max-sessions-per-address", "1000", "--host-rate", "100000", "--join-rate", "100000"),
    *("--max-connections-per-address", "1000", "--max-pending-per-address", "1000"),
)
METRIC = re.compile(r"^(beach_gc_[a-z_]+|beach_allocated_blocks)(?:\{[^}]*\})? (\S+)$", re.M)


async def gc_metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """The beach_gc_* gauges and counters (summed over generations), and the allocator's
    block count."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with http.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for name, value in METRIC.findall(text):
        out[name] = out.get(name, 0.0) + float(value)
    return out


async def until(
    http: aiohttp.ClientSession, port: int, ok: Callable[[dict[str, float]], bool]
) -> dict[str, float]:
    """Scrape /metrics until `ok` holds (the server freezes once a second), bounded in time."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        figures = await gc_metrics(http, port)
        if ok(figures) or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.25)


async def open_conn(http: aiohttp.ClientSession, url: str) -> Conn:
    conn = Conn(await asyncio.wait_for(http.ws_connect(url), 5))
    conn.welcome = await conn.expect("welcome")
    return conn


async def session(http: aiohttp.ClientSession, url: str, joined: bool) -> list[Conn]:
    host = await open_conn(http, url)
    await host.send("host")
    sid = (await host.expect("registered"))["session"]
    if not joined:
        return [host]
    joiner = await open_conn(http, url)
    await joiner.send("join", session=sid)
    await joiner.expect("joined")
    await host.expect("peer_joined")
    await joiner.send("signal", to="host", data={"k": "x"})
    await host.expect("signal")
    return [host, joiner]


@pytest.mark.e2e
async def test_ended_sessions_are_freed_though_frozen() -> None:
    serve = ServeProcess(*SERVE_ARGS)
    try:
        # No connection limit: every session's WebSocket stays open.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            start = await gc_metrics(http, serve.port)
            floor = start["beach_gc_frozen_objects"]
            assert floor > 10_000, start  # start-up (modules, classes, the app) was frozen

            gate = asyncio.Semaphore(50)

            async def one(i: int) -> list[Conn]:
                async with gate:
                    return await session(http, serve.url, i < JOINED)

            conns = [c for group in await asyncio.gather(*map(one, range(N))) for c in group]
            held = await until(
                http, serve.port, lambda m: m["beach_gc_frozen_objects"] > floor + 40 * N
            )
            # What the sessions hold (tens of objects each) is frozen, not left to the
            # collector's generations.
            assert held["beach_gc_frozen_objects"] > floor + 40 * N, (floor, held)

            await asyncio.gather(*(c.close() for c in conns))
            # Freed, frozen as they were: the allocator takes back nearly all the sessions took
            # (each is kept for its host's grace period, a few blocks).
            base, grew = start["beach_allocated_blocks"], held["beach_allocated_blocks"]
            assert grew > base + 100 * N, (start, held)

            def given_back(m: dict[str, float]) -> bool:
                return m["beach_allocated_blocks"] < base + 0.2 * (grew - base)

            ended = await until(http, serve.port, given_back)
            assert given_back(ended), (start, held, ended)
            assert ended["beach_gc_audits_total"] == 0, ended  # freed without a full collection
            assert ended["beach_gc_collections_total"] > start["beach_gc_collections_total"]
        assert not serve.tracebacks(), serve.stderr()
    finally:
        serve.stop()


class Pair:
    """Two objects in a cycle: only the collector can free them."""

    def __init__(self) -> None:
        self.other = Peer(self)


class Peer:
    def __init__(self, pair: Pair) -> None:
        self.pair = pair


async def test_the_audit_frees_cycles_a_freeze_kept() -> None:
    collector = Collector(lambda: 0, freeze=True, audit_interval=0.0)
    collector.start()  # freezes this process's objects: its floor
    try:
        assert collector.freeze and gc.get_freeze_count() > 0
        floor = gc.get_freeze_count()
        # Enough frozen garbage to pass twice what nothing live accounts for.
        cycles = [Pair() for _ in range(floor // 2 + 10_000)]
        probe = weakref.ref(cycles[0])
        gc.collect(1)  # they survive it, so they are frozen at once
        collector.check()  # (held: audited, but not freed)
        audits = collector.audits
        cycles.clear()
        gc.collect()  # an ordinary full collection never walks frozen objects
        assert probe() is not None
        collector.check()
        assert collector.audits == audits + 1
        assert probe() is None
        assert gc.get_freeze_count() < floor + 10_000
    finally:
        await collector.stop()
        gc.unfreeze()
