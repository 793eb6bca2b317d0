"""`--record FILE` never blocks the event loop, not even to open the file."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from beach_cli.errors import BeachError
from beach_cli.host.recorder import Recorder


async def test_a_fifo_nobody_reads_fails_in_time_and_the_loop_runs_meanwhile(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "nobody-reads.cast"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes: none will
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    start = time.monotonic()
    try:
        with pytest.raises(BeachError, match="did not open within"):
            await Recorder.open(fifo, 80, 24, ["bash"], timeout=0.5)
    finally:
        ticker.cancel()
    assert time.monotonic() - start < 3
    assert ticks >= 20  # the loop kept running while the open waited
    # A reader that comes late lets the writer thread's open through: it closes the file at
    # once, writing nothing, and ends.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + 5
        while any(t.name == "beach-record" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the abandoned writer thread never ended"
            await asyncio.sleep(0.01)
        assert os.read(reader, 100) == b""
    finally:
        os.close(reader)


async def test_a_bad_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BeachError, match=r"cannot record to .*: No such file or directory"):
        await Recorder.open(tmp_path / "no" / "such" / "dir.cast", 80, 24, ["bash"])
