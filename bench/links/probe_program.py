"""What a shaped link really gives, run as a script on each side of it.

    python probe_program.py serve ADDR PORT       (host side: UDP echo and TCP bulk on PORT)
    python probe_program.py ping ADDR PORT COUNT  (joiner side: UDP round trips, one JSON line)
    python probe_program.py bulk ADDR PORT up|down SECONDS  (one JSON line: bytes, seconds)

The bulk rate is counted where the bytes arrive, from the first byte to the last, so the
sender's socket buffers do not inflate it.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

CHUNK = 1 << 16
PING_TIMEOUT = 2.0


def receive_all(conn: socket.socket) -> tuple[int, float]:
    total, first = 0, None
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        if first is None:
            first = time.monotonic()
        total += len(data)
    return total, (time.monotonic() - first) if first is not None else 0.0


def send_for(conn: socket.socket, seconds: float) -> None:
    block = b"x" * CHUNK
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.sendall(block)
    conn.shutdown(socket.SHUT_WR)


def serve_tcp(conn: socket.socket) -> None:
    with conn:
        command = conn.recv(64).decode().split()
        if command[0] == "up":  # the joiner sends, we count
            total, seconds = receive_all(conn)
            conn.sendall(json.dumps({"bytes": total, "seconds": seconds}).encode())
        else:
            send_for(conn, float(command[1]))
            conn.recv(CHUNK)  # the client's verdict follows; wait for it before closing


def serve(addr: str, port: int) -> int:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((addr, port))
    tcp = socket.create_server((addr, port))

    def echo() -> None:
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(data, peer)

    threading.Thread(target=echo, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = tcp.accept()
        threading.Thread(target=serve_tcp, args=(conn,), daemon=True).start()


def ping(addr: str, port: int, count: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(PING_TIMEOUT)
    rtts, lost = [], 0
    for i in range(count):
        payload = f"{i}".encode().ljust(56, b".")
        start = time.perf_counter()
        s.sendto(payload, (addr, port))
        try:
            while s.recv(2048) != payload:  # a late answer to an earlier ping
                pass
            rtts.append((time.perf_counter() - start) * 1e3)
        except TimeoutError:
            lost += 1
        time.sleep(0.01)
    print(json.dumps({"rtt_ms": rtts, "lost": lost}), flush=True)
    return 0


def bulk(addr: str, port: int, way: str, seconds: float) -> int:
    with socket.create_connection((addr, port), timeout=seconds + 30) as conn:
        conn.sendall(f"{way} {seconds}".ljust(64).encode())
        if way == "up":
            send_for(conn, seconds)
            result = json.loads(conn.recv(CHUNK))
        else:
            total, took = receive_all(conn)
            conn.sendall(b"done")
            result = {"bytes": total, "seconds": took}
    print(json.dumps(result), flush=True)
    return 0


def main() -> int:
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "serve":
        return serve(addr, port)
    if mode == "ping":
        return ping(addr, port, int(sys.argv[4]))
    return bulk(addr, port, sys.argv[4], float(sys.argv[5]))


if __name__ == "__main__":
    sys.exit(main())
