"""`beach host --record FILE`: the session as an asciicast v2 file (asciinema's format).

A header line with the size, then one JSON array per event: [seconds, "o", text] for output
and [seconds, "r", "COLSxROWS"] for resizes. The event loop only timestamps each event and
queues it; a writer thread decodes, encodes and writes them in batches, flushing each batch (the
file is readable, and `asciinema play`-able, while the session runs). The queue is bounded: when
the disk cannot keep up, output is dropped and a marker event ([seconds, "m", text]) says how
much. If the disk fails, recording stops with a logged error and the session goes on.

The file is opened by the writer thread too: opening a FIFO that nobody reads (or a file on a
hung network mount) blocks, and that must not block the event loop. `Recorder.open` waits for
it within OPEN_TIMEOUT and fails with a clear error.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from ..errors import BeachError

log = logging.getLogger("beach.record")

QUEUE_LIMIT = 4 * 1024 * 1024  # output bytes waiting for the disk; beyond this, dropped
EVENT_COST = 64  # what a resize (or marker) counts against the limit
CLOSE_TIMEOUT = 5.0  # a disk that has not taken the last batch by then loses it
OPEN_TIMEOUT = 5.0  # a file that has not opened by then (a FIFO nobody reads) is an error


class Recorder:
    def __init__(self, path: Path, cols: int, rows: int, command: list[str]) -> None:
        self.path = path
        self._start = time.monotonic()
        self._opened = threading.Event()  # the writer thread has tried to open the file
        self._open_error: OSError | None = None
        self._abandoned = False  # it did not open in time: the thread closes it if it ever does
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "command": " ".join(command),
            "env": {k: os.environ[k] for k in ("TERM", "SHELL") if k in os.environ},
        }
        self._header = json.dumps(header, ensure_ascii=False)
        self._cond = threading.Condition()
        self._events: deque[tuple[float, str, bytes | str]] = deque()
        self._queued = 0  # bytes in `_events` and in the batch being written
        self._dropped = 0  # output bytes dropped since the last marker
        self.dropped_total = 0
        self._closing = False
        self._failed = False
        self._thread = threading.Thread(target=self._write_loop, name="beach-record", daemon=True)
        self._thread.start()

    @classmethod
    async def open(
        cls, path: Path, cols: int, rows: int, command: list[str], timeout: float = OPEN_TIMEOUT
    ) -> Recorder:
        """A recorder whose file is open (a bad path is the caller's error, before the session
        starts), never blocking the event loop for it."""
        rec = cls(path, cols, rows, command)
        # Bounded: the helper thread waits no longer than `timeout`, whatever the open does.
        opened = await asyncio.to_thread(rec._opened.wait, timeout)
        if not opened:
            rec._abandon()
            raise BeachError(
                f"cannot record to {path}: it did not open within {timeout:.0f} s "
                "(a FIFO that nothing reads?)"
            )
        if rec._open_error is not None:
            raise BeachError(f"cannot record to {path}: {rec._open_error.strerror}")
        return rec

    def _abandon(self) -> None:
        with self._cond:
            self._abandoned = self._closing = True
            self._events.clear()
            self._cond.notify()

    @property
    def queued(self) -> int:
        return self._queued

    def _now(self) -> float:
        return round(time.monotonic() - self._start, 6)

    def _put(self, kind: str, data: bytes | str, cost: int) -> None:
        if self._failed or self._closing:
            return
        with self._cond:
            if self._queued + cost > QUEUE_LIMIT:
                if kind == "o":
                    self._dropped += len(data)
                    self.dropped_total += len(data)
                return
            now = self._now()
            if self._dropped:
                note = f"beach: {self._dropped} bytes of output not recorded (the disk was slow)"
                self._events.append((now, "m", note))
                self._queued += EVENT_COST
                self._dropped = 0
            self._events.append((now, kind, data))
            self._queued += cost
            self._cond.notify()

    def output(self, data: bytes) -> None:
        self._put("o", data, len(data))

    def resize(self, cols: int, rows: int) -> None:
        self._put("r", f"{cols}x{rows}", EVENT_COST)

    # -- the writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            self._open_error = exc
            self._failed = True
            self._opened.set()
            return
        self._opened.set()
        self._write_events(file)

    def _write_events(self, file: TextIO) -> None:
        # Output is cut wherever the PTY read stopped: decode incrementally so a UTF-8
        # character split across two reads is written whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        lines = [self._header]
        try:
            while True:
                with self._cond:
                    while not self._events and not self._closing:
                        self._cond.wait()
                    if self._abandoned:
                        return
                    batch = list(self._events)
                    self._events.clear()
                    closing = self._closing
                cost = self._encode(batch, decoder, lines)
                if closing:
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        lines.append(json.dumps([self._now(), "o", tail], ensure_ascii=False))
                if lines:
                    file.write("\n".join(lines) + "\n")
                    file.flush()
                    lines = []
                with self._cond:
                    self._queued -= cost
                if closing:
                    return
        except (OSError, ValueError) as exc:
            self._failed = True
            log.error("recording to %s stopped: %s", self.path, exc)
            with self._cond:
                self._events.clear()
                self._queued = 0
        finally:
            with contextlib.suppress(OSError, ValueError):
                file.close()

    @staticmethod
    def _encode(
        batch: list[tuple[float, str, bytes | str]],
        decoder: codecs.IncrementalDecoder,
        lines: list[str],
    ) -> int:
        """Append the batch's events to `lines`, as JSON; what they cost against the limit."""
        cost = 0
        for t, kind, data in batch:
            if isinstance(data, bytes):
                cost += len(data)
                data = decoder.decode(data)
                if not data:
                    continue
            else:
                cost += EVENT_COST
            lines.append(json.dumps([t, kind, data], ensure_ascii=False))
        return cost

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued and close the file (waits for the disk, within a bound)."""
        with self._cond:
            if self._dropped and not self._closing:
                note = f"beach: {self._dropped} bytes of output not recorded (the disk was slow)"
                self._events.append((self._now(), "m", note))
                self._dropped = 0
            self._closing = True
            self._cond.notify()
        self._thread.join(CLOSE_TIMEOUT)
        if self._thread.is_alive():
            log.error("recording to %s: the disk did not take the last events in time", self.path)
        elif self.dropped_total:
            log.warning("recording to %s: %d bytes dropped", self.path, self.dropped_total)

    async def aclose(self) -> None:
        """`close`, off the event loop."""
        await asyncio.to_thread(self.close)
