"""Load generator for `beach serve`, run in its own process by the server section:

    python -m bench.loadgen --url ws://... --server-pid PID --sessions N --rate R --seconds S

1. relay latency on the idle server: one host and one joiner connection; the joiner sends
   `signal` to "host" at a fixed rate and the host side timestamps each arrival (one process,
   one clock, so the one-way time is exact);
2. N host registrations ({"type":"host","v":1} -> "registered"), held open and idle, with the
   server's VmRSS read before and after;
3. relay latency again while the N sessions are held;
4. churn: the N sessions end, N new ones come and go, with VmRSS and the server's collector
   figures (its /metrics) read at each step.

The load generator freezes its own objects once its connections are open (gc.freeze()), so
that its own full collections, not the server's, do not show in the latencies.

Prints one JSON object on stdout. Every wait and loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import statistics
import sys
import time
from typing import Any

import aiohttp

from .beach import read_rss_kib
from .stats import percentile

STEP_TIMEOUT = 30.0
CONCURRENCY = 200


class Conn:
    """One signaling WebSocket with a reader task (which also answers the server's pings)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.on_signal: Any = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "signal" and self.on_signal is not None:
                    self.on_signal(data)
                elif data.get("type") != "welcome":
                    self.inbox.put_nowait(data)

    async def send(self, **msg: Any) -> None:
        await self.ws.send_str(json.dumps({"v": 1, **msg}))

    async def expect(self, mtype: str) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.inbox.get(), STEP_TIMEOUT)
        if msg.get("type") != mtype:
            raise RuntimeError(f"expected {mtype}, got {msg}")
        return msg

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def connect(http: aiohttp.ClientSession, url: str) -> Conn:
    ws = await asyncio.wait_for(http.ws_connect(url, autoping=True), STEP_TIMEOUT)
    return Conn(ws)


async def register(http: aiohttp.ClientSession, url: str) -> tuple[Conn, str]:
    conn = await connect(http, url)
    try:
        await conn.send(type="host")
        msg = await conn.expect("registered")
    except BaseException:
        await conn.close()
        raise
    return conn, msg["session"]


async def relay(http: aiohttp.ClientSession, url: str, rate: int, seconds: float) -> dict:
    """One-way joiner -> server -> host time of `signal` messages sent at `rate` per second."""
    host, session = await register(http, url)
    joiner = await connect(http, url)
    latencies: list[float] = []
    try:
        await joiner.send(type="join", session=session)
        await joiner.expect("joined")
        await host.expect("peer_joined")
        count = max(int(rate * seconds), 1)
        all_in = asyncio.Event()

        def arrived(msg: dict[str, Any]) -> None:
            latencies.append((time.perf_counter_ns() - msg["data"]["t"]) / 1e9)
            if len(latencies) >= count:
                all_in.set()

        host.on_signal = arrived
        start = time.perf_counter()
        deadline = start + seconds * 2 + STEP_TIMEOUT
        sent = 0
        error = None
        while sent < count and time.perf_counter() < deadline:
            due = start + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            data = {"k": "bench", "i": sent, "t": time.perf_counter_ns()}
            try:
                await joiner.send(type="signal", to="host", data=data)
            except (aiohttp.ClientError, ConnectionError) as exc:  # the server hung up on us
                error = f"after {sent} messages: {exc!r}"
                break
            sent += 1
        elapsed = time.perf_counter() - start
        if error is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), STEP_TIMEOUT)
    finally:
        await joiner.close()
        await host.close()
    result: dict[str, Any] = {
        "sent": sent,
        "received": len(latencies),
        "rate": sent / elapsed,
        "error": error,
    }
    if latencies:
        result |= {
            "p50_ms": percentile(latencies, 50) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3,
            "max_ms": max(latencies) * 1e3,
        }
    return result


async def relay_runs(
    http: aiohttp.ClientSession, url: str, rate: int, seconds: float, runs: int
) -> dict:
    """`relay` `runs` times: p50 and p99 are medians over the runs (one stall on this shared
    machine moves a single run's p99 by several ms), max is the worst of all."""
    results = [await relay(http, url, rate, seconds) for _ in range(runs)]
    timed = [r for r in results if "p99_ms" in r]
    out: dict[str, Any] = {
        "sent": sum(r["sent"] for r in results),
        "received": sum(r["received"] for r in results),
        "rate": statistics.median(r["rate"] for r in results),
        "error": next((r["error"] for r in results if r["error"]), None),
        "runs": results,
    }
    if timed:
        out |= {
            "p50_ms": statistics.median(r["p50_ms"] for r in timed),
            "p99_ms": statistics.median(r["p99_ms"] for r in timed),
            "max_ms": max(r["max_ms"] for r in timed),
        }
    return out


async def hold_sessions(
    http: aiohttp.ClientSession, url: str, count: int, budget: float
) -> tuple[list[Conn], list[str]]:
    """Register up to `count` sessions within `budget` seconds; returns what succeeded."""
    conns: list[Conn] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(CONCURRENCY)
    deadline = time.monotonic() + budget

    async def one() -> None:
        async with gate:
            if time.monotonic() > deadline:
                return
            try:
                conn, _ = await register(http, url)
                conns.append(conn)
            except Exception as exc:
                if len(errors) < 5:
                    errors.append(repr(exc))

    await asyncio.gather(*(one() for _ in range(count)))
    return conns, errors


async def gc_figures(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's beach_gc_* figures and allocated blocks from its /metrics ({} if none)."""
    metrics = url.replace("ws://", "http://", 1).rsplit("/", 1)[0] + "/metrics"
    async with http.get(metrics, timeout=aiohttp.ClientTimeout(total=STEP_TIMEOUT)) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("beach_gc_", "beach_allocated_blocks ")):
            name, value = line.rsplit(" ", 1)
            out[name.replace('{generation="', "_gen").replace('"}', "")] = float(value)
    return out


async def close_all(conns: list[Conn]) -> None:
    for i in range(0, len(conns), 500):
        await asyncio.gather(*(c.close() for c in conns[i : i + 500]))
    conns.clear()


async def churn(
    http: aiohttp.ClientSession, args: argparse.Namespace, conns: list[Conn]
) -> dict[str, Any]:
    """End the held sessions, let N new ones come and go: does the server free them?"""
    out: dict[str, Any] = {}
    await close_all(conns)
    await asyncio.sleep(2.0)  # the server notices every close and settles (its freeze: 1 s)
    out["rss_closed_kib"] = read_rss_kib(args.server_pid)
    out["gc_closed"] = await gc_figures(http, args.url)
    more, _ = await hold_sessions(http, args.url, args.sessions, args.budget)
    await asyncio.sleep(1.0)
    out["sessions_again"] = len(more)
    out["rss_again_kib"] = read_rss_kib(args.server_pid)
    await close_all(more)
    await asyncio.sleep(2.0)
    out["rss_closed_again_kib"] = read_rss_kib(args.server_pid)
    out["gc_closed_again"] = await gc_figures(http, args.url)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        out["relay_idle"] = await relay_runs(http, args.url, args.rate, args.seconds, args.runs)
        await asyncio.sleep(0.5)
        out["rss_before_kib"] = read_rss_kib(args.server_pid)
        start = time.perf_counter()
        conns, errors = await hold_sessions(http, args.url, args.sessions, args.budget)
        out["register_seconds"] = time.perf_counter() - start
        out["sessions"] = len(conns)
        out["errors"] = errors
        try:
            gc.collect()  # our own pauses: now, not during the relay runs
            gc.freeze()
            await asyncio.sleep(1.0)  # idle: let the server settle
            out["rss_after_kib"] = read_rss_kib(args.server_pid)
            out["gc_held"] = await gc_figures(http, args.url)
            out["relay_loaded"] = await relay_runs(
                http, args.url, args.rate, args.seconds, args.runs
            )
            out["gc_loaded"] = await gc_figures(http, args.url)
            out["rss_after_relay_kib"] = read_rss_kib(args.server_pid)
            if args.churn:
                out["churn"] = await churn(http, args, conns)
        finally:
            await close_all(conns)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3, help="relay runs per phase (medians)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds to register all")
    parser.add_argument("--churn", action="store_true", help="then end them, N more come and go")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        out = runner.run(main_async(args))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
