"""The data channel alone, stock aiortc against beach's tuning (beach_cli/link/sctp_tuning.py:
bigger UDP receive buffers and delayed SACKs), A/B in one run: two processes
(bench/transport_program.py) over this machine's interface, the stream size of the run in
64 KiB messages with beach's water marks for a fast path, pairs interleaved so drift hits both
alike; then 8-byte echoes (a keystroke's), and a shorter stream over a 150 ms round trip (each
peer holds its datagrams: this kernel has no netem) where delayed SACKs could slow aiortc's
slow start, then three echoes there, the last one's reply lost once (its retransmission
timeout: aiortc's floor is 1 s, the tuning's ~RTT + 250 ms). A third column is delayed SACKs
alone, with the buffer a stock rmem_max allows."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from aiortc.rtcsctptransport import USERDATA_MAX_LENGTH

from .context import Context
from .env import PYTHON, proc_env
from .errors import BenchError
from .results import Section, Spec, Target
from .stats import fmt, fmt_ratio, median, percentile, ratio

MESSAGE = 64 * 1024
ROUND_TRIP = 0.150  # the "far" row: each end holds its datagrams half of this
FAR_BYTES = 2_000_000
LOST_ECHO = 2  # the far run's echoes: two that measure the round trip, then one lost once
# BEACH_SCTP_TUNING for both ends, and the receive buffer they ask for (None: as configured).
# "sacks" is what a machine with a stock net.core.rmem_max (208 KiB) gets: delayed SACKs only.
STOCK_RMEM_MAX = 212_992
MODES: dict[str, tuple[str, int | None]] = {
    "stock": ("off", None),
    "sacks": ("on", STOCK_RMEM_MAX),
    "tuned": ("on", None),
}
SPEC = Spec(
    key="transport",
    title="Data channel, stock aiortc against beach's SCTP tuning (two processes, median)",
    columns=("", "stock aiortc", "delayed SACKs, rmem_max 208 KiB", "tuned", "tuned / stock"),
    labels=(
        "throughput, MB/s",
        "sender CPU, s",
        "receiver CPU, s",
        "SACKs per DATA packet (receiver)",
        "DATA chunks retransmitted",
        "receive-buffer drops (RcvbufErrors delta)",
        "send-buffer errors (SndbufErrors delta)",
        "UDP receive buffer granted, KiB",
        "8-byte echo round trip p50, ms",
        "8-byte echo round trip p99, ms",
        "first echo right after the bulk, ms",
        "bulk over a 150 ms round trip, s",
        "then an echo whose reply is lost once, ms",
    ),
    targets=("tuned data channel: >= 1.4x stock throughput, <= 0.8x sender CPU, no drops",),
)


def _udp_errors() -> tuple[int, int]:
    """The namespace's UDP RcvbufErrors and SndbufErrors (every process's, so a busy machine
    adds noise)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")]), int(rows[1][rows[0].index("SndbufErrors")])


async def _readline(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise BenchError(f"transport peer exited ({await proc.wait()}) without answering")
    return dict(json.loads(line))


async def _pair(
    total: int,
    pings: int,
    mode: tuple[str, int | None],
    timeout: float,
    delay: float = 0.0,
    lose_echo: int = -1,
) -> dict[str, Any]:
    tuning, rcvbuf = mode
    env = proc_env(BEACH_SCTP_TUNING=tuning)
    argv = [PYTHON, "-m", "bench.transport_program"]
    common = ["--bytes", str(total), "--message", str(MESSAGE), "--pings", str(pings)]
    common += ["--timeout", str(timeout), "--delay", str(delay), "--lose-echo", str(lose_echo)]
    common += ["--rcvbuf", str(rcvbuf)] if rcvbuf else []
    pipes: dict[str, Any] = {"stdin": asyncio.subprocess.PIPE, "stdout": asyncio.subprocess.PIPE}
    procs = [
        await asyncio.create_subprocess_exec(*argv, role, *common, env=env, **pipes)
        for role in ("sender", "receiver")
    ]
    sender, receiver = procs
    try:
        assert sender.stdin is not None and receiver.stdin is not None
        receiver.stdin.write((json.dumps(await _readline(sender, timeout)) + "\n").encode())
        sender.stdin.write((json.dumps(await _readline(receiver, timeout)) + "\n").encode())
        before = _udp_errors()
        got = await _readline(receiver, timeout)
        sent = await _readline(sender, timeout)
        after = _udp_errors()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 15)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    r, s = got["result"], sent["result"]
    if r["bytes"] != total or not r["ordered"]:
        raise BenchError(f"{mode}: receiver got {r['bytes']} of {total} bytes, or out of order")
    drops, send_errors = (a - b for a, b in zip(after, before, strict=True))
    mbps = total / s["wall"] / 1e6
    return {"receiver": r, "sender": s, "drops": drops, "send_errors": send_errors, "mbps": mbps}


def run(ctx: Context) -> Section:
    opts = ctx.options
    total = opts.stream_bytes
    pings = max(opts.keystrokes // 5, 10)
    far_bytes = min(FAR_BYTES, total)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(opts.reps):
        for name, mode in MODES.items():
            run = asyncio.run(_pair(total, pings, mode, opts.timeout))
            # Slow start, where delayed SACKs could cost most: a long round trip, no rate limit
            # (the receive buffer makes no difference there, so "sacks" is not run again).
            if name != "sacks":
                far = asyncio.run(
                    _pair(
                        far_bytes,
                        LOST_ECHO + 1,
                        mode,
                        opts.timeout,
                        delay=ROUND_TRIP / 2,
                        lose_echo=LOST_ECHO,
                    )
                )
                run["far"] = far["sender"]["wall"]
                run["far_lost"] = 1000 * far["sender"]["trips"][LOST_ECHO]
            runs[name].append(run)
    # DATA chunks the stream needs once: each message is fragmented on its own.
    full, rest = divmod(total, MESSAGE)
    needed = full * -(-MESSAGE // USERDATA_MAX_LENGTH) + -(-rest // USERDATA_MAX_LENGTH)

    def med(mode: str, pick: Any) -> float | None:
        values = [pick(run) for run in runs[mode]]
        return None if None in values else median([float(v) for v in values])

    figures: dict[str, list[float | None]] = {}
    picks = (
        lambda run: run["mbps"],
        lambda run: run["sender"]["cpu"],
        lambda run: run["receiver"]["cpu"],
        lambda run: run["receiver"]["sacks_out"] / max(run["receiver"]["data_in"], 1),
        lambda run: run["sender"]["data_out"] - needed,
        lambda run: run["drops"],
        lambda run: run["send_errors"],
        lambda run: max(run["receiver"]["rcvbuf"] or [0]) / 1024,
        lambda run: 1000 * percentile(run["sender"]["trips"], 50),
        lambda run: 1000 * percentile(run["sender"]["trips"], 99),
        lambda run: 1000 * run["sender"]["trips"][0],
        lambda run: run.get("far"),
        lambda run: run.get("far_lost"),
    )
    digits = (1, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2, 0)
    rows = []
    for label, pick, d in zip(SPEC.labels, picks, digits, strict=True):
        stock, sacks, tuned = (med(name, pick) for name in MODES)
        figures[label] = [stock, sacks, tuned]
        cells = [fmt(stock, d), fmt(sacks, d), fmt(tuned, d), fmt_ratio(ratio(tuned, stock))]
        rows.append([label, *cells])
    speed = ratio(figures[SPEC.labels[0]][2], figures[SPEC.labels[0]][0]) or 0.0
    cpu = ratio(figures[SPEC.labels[1]][2], figures[SPEC.labels[1]][0]) or 0.0
    drops = figures[SPEC.labels[5]][2] or 0.0
    target = Target(
        SPEC.targets[0],
        f"{speed:.2f}x throughput, {cpu:.2f}x sender CPU, {drops:.0f} drops",
        # A quick run's stream is over before the window has grown: too small to judge.
        speed >= 1.4 and cpu <= 0.8 and drops == 0 if total >= 5_000_000 else None,
    )
    notes = [
        f"{total / 1e6:.1f} MB in {MESSAGE // 1024} KiB messages, {opts.reps} pair(s) per mode, "
        f"load average {os.getloadavg()[0]:.2f}. The round-trip row sends "
        f"{far_bytes / 1e6:.1f} MB with every datagram held {1000 * ROUND_TRIP / 2:.0f} ms by "
        "its sender (no rate limit: the time is slow start's); then echoes over that link, "
        "the reply to the third lost once in the receiver's own send path: with nothing sent "
        "behind it, the retransmission timer resends it (aiortc: after at least 1 s; tuned: "
        "SRTT + max(4 RTTVAR, 250 ms)). The tuned receive buffer is "
        "what the kernel grants (net.core.rmem_max caps it; docs/operations.md); drops are "
        "the whole namespace's, so other traffic on a busy machine adds to them.",
    ]
    return Section(SPEC, rows, notes=notes, targets=[target], data={"runs": runs})
