"""Splitting this machine's cores between the host side and the joiner side, to stand in for
joiners on machines of their own (Linux CPU affinity; children inherit it when they fork, so
already-running descendants are pinned one by one)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(c) for c in f.read().split()]
    return kids


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` and of its descendants onto `cpus`."""
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), cpus)
        for child in _children(pid):
            pin_tree(child, cpus)


def can_split() -> bool:
    return len(os.sched_getaffinity(0)) >= 2


@contextlib.contextmanager
def split(host_side: Iterable[int], joiner_side: Iterable[int]) -> Iterator[None]:
    """Host-side processes (and this benchmark, which drains the host's screen) on one core,
    joiner-side processes on the others; everything back on every core afterwards."""
    every = os.sched_getaffinity(0)
    first = {min(every)}
    rest = every - first
    host_side, joiner_side = list(host_side), list(joiner_side)
    try:
        pin_tree(os.getpid(), first)
        for pid in host_side:
            pin_tree(pid, first)
        for pid in joiner_side:
            pin_tree(pid, rest)
        yield
    finally:
        for pid in [os.getpid(), *host_side, *joiner_side]:
            pin_tree(pid, every)
