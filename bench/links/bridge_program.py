"""The delay bridge, run as a script in the middle namespace: two interfaces, an AF_PACKET
socket on each, every frame from one side held `delay` ms and then sent out the other side
(where a tbf qdisc applies the rate), a share `loss` of frames dropped at random.

This kernel has no netem, hence a userspace bridge. It runs as a process of its own so its CPU
is not the benchmark's event loop. Each direction's queue is bounded (frames beyond it are
dropped, as a router would). Commands on stdin, one per line: `stats` prints the counters as
one JSON line; end of input stops the bridge.

    python bridge_program.py IF_A IF_B DELAY_MS LOSS SEED QUEUE_BYTES
"""

from __future__ import annotations

import collections
import errno
import json
import os
import random
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+: do not hand us back the frames we send ourselves
SOCKET_BUFFER = 8 << 20
BURST = 256  # frames read from one socket per wake-up, so neither side starves the other


class Direction:
    """Frames from `rx` to `tx`, each sent `delay` seconds after it arrived."""

    def __init__(self, rx: socket.socket, tx: socket.socket, queue_bytes: int) -> None:
        self.rx, self.tx = rx, tx
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.limit = queue_bytes
        self.counts = {"frames": 0, "bytes": 0, "lost": 0, "overflow": 0, "shaper_drops": 0}
        self.counts.update(max_queue_bytes=0, max_late_us=0)

    def receive(self, now: float, delay: float, loss: float, rng: random.Random) -> None:
        for _ in range(BURST):
            try:
                frame = self.rx.recv(65536)
            except BlockingIOError:
                return
            if loss and rng.random() < loss:
                self.counts["lost"] += 1
            elif self.queued + len(frame) > self.limit:
                self.counts["overflow"] += 1
            else:
                self.queue.append((now + delay, frame))
                self.queued += len(frame)
                self.counts["max_queue_bytes"] = max(self.counts["max_queue_bytes"], self.queued)

    def send_due(self, now: float) -> bool:
        """Send every frame whose time has come; False if the socket is full (try later)."""
        while self.queue and self.queue[0][0] <= now:
            due, frame = self.queue[0]
            try:
                self.tx.send(frame)
            except BlockingIOError:
                return False
            except OSError as exc:  # ENOBUFS: the shaper's queue is full and dropped it
                if exc.errno != errno.ENOBUFS:
                    raise
                self.counts["shaper_drops"] += 1
            else:
                self.counts["frames"] += 1
                self.counts["bytes"] += len(frame)
            late = int((now - due) * 1e6)
            self.counts["max_late_us"] = max(self.counts["max_late_us"], late)
            self.queue.popleft()
            self.queued -= len(frame)
        return True

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None


def open_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    # As root, past net.core.rmem_max: a burst at the sender's pace must not overflow here.
    s.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)  # SO_RCVBUFFORCE
    s.setsockopt(socket.SOL_SOCKET, 32, SOCKET_BUFFER)  # SO_SNDBUFFORCE
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def main() -> int:
    if_a, if_b, delay_ms, loss_s, seed, queue_s = sys.argv[1:7]
    delay, loss, limit = float(delay_ms) / 1e3, float(loss_s), int(queue_s)
    rng = random.Random(int(seed))
    a, b = open_socket(if_a), open_socket(if_b)
    ways = {a.fileno(): Direction(a, b, limit), b.fileno(): Direction(b, a, limit)}
    names = {a.fileno(): f"{if_a}>{if_b}", b.fileno(): f"{if_b}>{if_a}"}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    watched = [a.fileno(), b.fileno(), stdin]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    pending = b""
    while True:
        now = time.monotonic()
        blocked = [w for w in ways.values() if not w.send_due(now)]
        dues = [d for d in (w.next_due() for w in ways.values()) if d is not None]
        # select, not poll: its timeout has microseconds, and the LAN profile's delay is 0.5 ms.
        timeout = None if not dues else max(min(dues) - time.monotonic(), 0.0)
        if blocked:
            timeout = 0.001 if timeout is None else min(timeout, 0.001)
        readable, _, _ = select.select(watched, [], [], timeout)
        for fd in readable:
            if fd == stdin:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return 0
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip() == b"stats":
                        stats = {names[fd]: w.counts for fd, w in ways.items()}
                        sys.stdout.write(json.dumps(stats) + "\n")
                        sys.stdout.flush()
            else:
                ways[fd].receive(time.monotonic(), delay, loss, rng)


if __name__ == "__main__":
    sys.exit(main())
