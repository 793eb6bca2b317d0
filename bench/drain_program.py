"""A joiner's terminal, drained in a process of its own (run as a script, given the terminal's
master fd): reads everything, and for each end marker `BENCH-END-<n>:` prints one line
`<n> <perf_counter> <bytes read so far>`. A joiner's screen is on another machine in real use;
here it gets a reader of its own rather than a share of the benchmark's one tap thread, which
reads the host's own screen."""

from __future__ import annotations

import os
import re
import select
import sys
import time

MARKER = re.compile(rb"BENCH-END-(\d+):")
KEEP = 64  # a marker may straddle two reads


def main() -> int:
    fd = int(sys.argv[1])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    total = 0
    window = b""
    while True:
        poller.poll()
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        except OSError:  # EIO: the joiner is gone
            return 0
        if not data:
            return 0
        now = time.perf_counter()
        total += len(data)
        window = window[-KEEP:] + data
        found = [m.group(1).decode() for m in MARKER.finditer(window)]
        if found:
            sys.stdout.write("".join(f"{n} {now} {total}\n" for n in found))
            sys.stdout.flush()
            window = window[window.rfind(b":") + 1 :]  # each marker reported once


if __name__ == "__main__":
    sys.exit(main())
