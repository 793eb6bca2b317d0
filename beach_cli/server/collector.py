"""How `beach serve` keeps Python's garbage collector from pausing it.

A full collection walks every tracked object: at 10,000 sessions (~90 objects each) that is
0.4-1.0 s during which nothing is relayed. What a session holds lives for minutes to hours, and
it is freed by reference counting when the session ends (app.py and client.py break the two
cycles aiohttp and a cancelled writer used to leave), so the collector has nothing to find
among it. So whatever survives a collection of the young generations is frozen at once
(gc.freeze(), from the collector's own callback: moved out of every generation, never walked
again). The oldest generation stays nearly empty, and a full collection walks only the young.

A frozen object is still freed when its last reference goes; only a cycle formed after it was
frozen is kept. So that such a leak stays bounded, the frozen set is audited (unfrozen, fully
collected, frozen again: one full pause) when it holds more than twice what the live
connections and sessions account for. Counting the frozen set walks it (a stall of ~0.1 s at
10,000 sessions), so it is counted only when what was frozen since the last count could have
passed that mark, and at most once a minute.

/metrics shows the frozen set as an upper bound (counting it would be a pause of its own) and
the allocator's block count, which falls back when ended sessions are freed, frozen or not.

BEACH_SERVE_GC=default leaves Python's collector as it is (the benchmark's "before" leg); the
probe that times every collection runs either way and feeds /metrics.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("beach.server")

ENV = "BEACH_SERVE_GC"
CHECK_INTERVAL = 1.0  # seconds between two looks at whether the frozen set needs counting
# Tracked objects one connection or session accounts for, before the first audit measures it
# (an idle host connection on aiohttp 3.14 with uvloop: ~86).
OBJECTS_PER_LIVE = 120
AUDIT_RATIO = 2.0  # audit once the frozen set is this many times what the live ones explain
MIN_AUDIT_INTERVAL = 60.0  # seconds between two counts (or audits) of the frozen set


class GcProbe:
    """Times every collection (gc.callbacks), per generation."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0  # the longest pause of any generation since start
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        gen = info["generation"]
        self.collections[gen] += 1
        self.seconds[gen] += took
        self.longest = max(self.longest, took)


class Collector:
    """The probe, and (unless turned off) the freeze policy, for one server process."""

    def __init__(
        self,
        live: Callable[[], int],
        freeze: bool | None = None,
        audit_interval: float = MIN_AUDIT_INTERVAL,
    ) -> None:
        self.freeze = os.environ.get(ENV, "freeze") != "default" if freeze is None else freeze
        self.audit_interval = audit_interval
        self.probe = GcProbe()
        self.audits = 0
        self._live = live  # connections + sessions held now
        self._floor = 0  # frozen at start-up: modules, classes, the app
        self._per_live = float(OBJECTS_PER_LIVE)
        self._counted = 0  # the frozen set at its last count
        self._added = 0  # objects frozen since (an upper bound: some have died)
        self._last_count = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Before the server listens: the start-up collection is no client's pause."""
        if self.freeze:
            gc.collect()
            gc.freeze()
            self._floor = self._counted = gc.get_freeze_count()
            self._last_count = time.monotonic()
            self._task = asyncio.create_task(self._loop())
            log.info("garbage collector: %d start-up objects frozen", self._floor)
        gc.callbacks.append(self._on_gc)

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        self.probe(phase, info)
        if phase == "stop" and self._task is not None and info["generation"] >= 1:
            # The survivors have just moved to the oldest generation (the young ones are
            # empty): freeze them. Cheap: a few thousand objects, and freezing is a list splice.
            self._added += len(gc.get_objects(2))
            gc.freeze()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.check()

    def check(self) -> None:
        """Count the frozen set if it may have outgrown the live connections and sessions, and
        audit it if it has."""
        live = self._live()
        limit = AUDIT_RATIO * (self._floor + self._per_live * live)
        now = time.monotonic()
        if self._counted + self._added <= limit or now - self._last_count < self.audit_interval:
            return
        self._counted, self._added = gc.get_freeze_count(), 0
        self._last_count = now
        if self._counted > limit:
            self.audit(live)

    def audit(self, live: int) -> None:
        """Unfreeze, collect everything, freeze again; learn what the live ones hold."""
        start = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()  # (its survivors are frozen again by _on_gc)
        gc.freeze()
        self.audits += 1
        self._counted, self._added = gc.get_freeze_count(), 0
        frozen = self._counted
        if live:  # the live set is bigger than assumed: no audit again for that alone
            self._per_live = max(self._per_live, (frozen - self._floor) / live)
        log.info(
            "garbage collector: audit freed %d objects in %.0f ms; %d frozen",
            found,
            1e3 * (time.perf_counter() - start),
            frozen,
        )

    def render(self) -> list[str]:
        """Prometheus lines for /metrics."""
        p = self.probe
        lines = [
            "# HELP beach_gc_collections_total Garbage collections, by generation.",
            "# TYPE beach_gc_collections_total counter",
        ]
        lines += [
            f'beach_gc_collections_total{{generation="{g}"}} {n}'
            for g, n in enumerate(p.collections)
        ]
        lines += [
            "# HELP beach_gc_pause_seconds_total Time spent in garbage collections, by generation.",
            "# TYPE beach_gc_pause_seconds_total counter",
        ]
        lines += [
            f'beach_gc_pause_seconds_total{{generation="{g}"}} {s:.6f}'
            for g, s in enumerate(p.seconds)
        ]
        for name, help_text, value in (
            (
                "beach_gc_pause_seconds_max",
                "The longest garbage collection since start.",
                p.longest,
            ),
            (
                "beach_gc_frozen_objects",
                "Objects frozen out of the collector's reach, at most (the last count and those "
                "frozen since; some have been freed).",
                self._counted + self._added,
            ),
            (
                "beach_allocated_blocks",
                "Memory blocks Python's allocator has handed out (sys.getallocatedblocks()).",
                sys.getallocatedblocks(),
            ),
            (
                "beach_gc_audits_total",
                "Full collections of the frozen objects (leak audits).",
                self.audits,
            ),
        ):
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return lines
