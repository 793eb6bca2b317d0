"""`beach host --record FILE`: the session as an asciicast v2 file (asciinema's format).

A header line with the size, then one JSON array per event: [seconds, "o", text] for output
and [seconds, "r", "COLSxROWS"] for resizes. Each event is one write (the file is readable, and
`asciinema play`-able, while the session runs); if the disk fails, recording stops with a
logged error and the session goes on.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("beach.record")


class Recorder:
    def __init__(self, path: Path, cols: int, rows: int, command: list[str]) -> None:
        self.path = path
        self._start = time.monotonic()
        # Output is cut wherever the PTY read stopped: decode incrementally so a UTF-8
        # character split across two reads is written whole.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._file: IO[str] | None = path.open("w", encoding="utf-8", buffering=1)
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "command": " ".join(command),
            "env": {k: os.environ[k] for k in ("TERM", "SHELL") if k in os.environ},
        }
        self._write(header)

    @property
    def active(self) -> bool:
        return self._file is not None

    def _write(self, obj: object) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        except OSError as exc:
            log.error("recording to %s stopped: %s", self.path, exc)
            self.close()

    def _now(self) -> float:
        return round(time.monotonic() - self._start, 6)

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._write([self._now(), "o", text])

    def resize(self, cols: int, rows: int) -> None:
        self._write([self._now(), "r", f"{cols}x{rows}"])

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                tail = self._decoder.decode(b"", final=True)
                if tail:
                    f.write(json.dumps([self._now(), "o", tail], ensure_ascii=False) + "\n")
                f.close()
            except OSError as exc:
                log.error("recording to %s: %s", self.path, exc)
