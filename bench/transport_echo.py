"""Keystroke echo through a shaped link ("mobile" by default: 150 ms, 2 Mbit/s, 1% loss), beach
with and without its SCTP tuning against `ssh -tt`, side by side in one run:

    python -m bench.transport_echo [--profile mobile] [--rounds 4] [--keystrokes 250]

It is the links section's echo leg (bench/links/legs.py: one keystroke after the previous echo
came back), in rounds that run every variant once each, fresh processes every time, so drift
hits all alike. beach's variants differ only in their environment, the same for host and
joiner: BEACH_SCTP_RTO=stock keeps aiortc's retransmission timeout (the rest tuned),
BEACH_SCTP_TUNING=off is stock aiortc. Needs root (namespaces), sshd and the links' tools."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace

from .context import Context, Options
from .env import proc_env
from .links import remote
from .links.legs import Failure, Legs, Session, attempt
from .links.net import shaped
from .links.profiles import PROFILES
from .links.remote import LinkSshd
from .reallink import missing
from .stats import fmt, percentile

VARIANTS: dict[str, dict[str, str] | None] = {  # None: not beach
    "beach": {},
    "beach, aiortc's RTO": {"BEACH_SCTP_RTO": "stock"},
    "beach, stock aiortc": {"BEACH_SCTP_TUNING": "off"},
    "ssh -tt": None,
}


@contextlib.contextmanager
def beach_env(extra: dict[str, str]) -> Iterator[None]:
    """The links' hosts and joiners start with bench/env.py's clean environment, which drops
    every BEACH_* setting: add this variant's back, for as long as its session runs."""
    clean = remote.proc_env
    remote.proc_env = lambda **more: proc_env(**extra, **more)
    try:
        yield
    finally:
        remote.proc_env = clean


def measure(ctx: Context, profile: str, rounds: int, keys: int) -> dict[str, list[float]]:
    link_profile = next(p for p in PROFILES if p.name == profile)
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    failures: list[str] = []
    assert ctx.ssh is not None
    with shaped(link_profile) as link:
        sshd = LinkSshd(ctx.ssh, link)
        try:
            legs = Legs(link, sshd, ctx.workdir, ctx.options.timeout)
            for n in range(rounds):
                for name, env in VARIANTS.items():
                    method = "ssh -tt" if env is None else "beach"

                    def leg(method: str = method) -> list[float]:
                        session = Session(legs, method)
                        try:
                            return session.echo(keys, ctx.options.warmup, ctx.options.timeout)
                        finally:
                            session.close()

                    with beach_env(env or {}):
                        got = attempt(f"{profile} {name} echo, round {n + 1}", leg, failures)
                    if not isinstance(got, Failure):
                        samples[name] += got
        finally:
            sshd.close()
    for failure in failures:
        print(f"not measured: {failure}", file=sys.stderr)
    return samples


def table(samples: dict[str, list[float]]) -> list[str]:
    ssh = samples["ssh -tt"]
    base50 = percentile(ssh, 50) if ssh else None
    base99 = percentile(ssh, 99) if ssh else None
    lines = [
        "| echo | samples | p50 ms | p99 ms | max ms | p50 - ssh's, ms | p99 / ssh's |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, got in samples.items():
        if not got:
            lines.append(f"| {name} | 0 | - | - | - | - | - |")
            continue
        p50, p99 = percentile(got, 50), percentile(got, 99)
        diff = "-" if base50 is None else f"{1000 * (p50 - base50):+.1f}"
        times = "-" if not base99 else f"{p99 / base99:.2f}x"
        cells = [fmt(1000 * p50, 1), fmt(1000 * p99, 0), fmt(1000 * max(got), 0), diff, times]
        lines.append(f"| {name} | {len(got)} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="mobile", choices=[p.name for p in PROFILES])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--keystrokes", type=int, default=250, help="per variant and round")
    p.add_argument("--json", help="also write every sample (seconds) here")
    args = p.parse_args()
    ctx = Context(replace(Options(), warmup=5))
    try:
        lacks = missing(ctx)
        if lacks:
            raise SystemExit(f"bench.transport_echo needs {', '.join(lacks)}")
        load0 = os.getloadavg()[0]
        samples = measure(ctx, args.profile, args.rounds, args.keystrokes)
        print(f"{args.profile}: {args.rounds} rounds x {args.keystrokes} keystrokes per variant")
        print(f"load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
        print("\n".join(table(samples)))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(samples, f)
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
