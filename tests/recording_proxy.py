"""A TCP proxy in front of a server that keeps every byte passing through it, each connection's
two directions in their own files: lets a test check what a server received, byte for byte,
including the HTTP requests a browser made and the WebSocket frames it sent (`client_stream`
takes a recording apart: request heads, and WebSocket messages unmasked).

Usage: python recording_proxy.py LISTEN_HOST UPSTREAM_HOST UPSTREAM_PORT RECORD_DIR
Prints `listening on HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

CONNECT_TIMEOUT = 10.0


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path) -> None:
    with path.open("wb") as out:
        try:
            while data := await reader.read(65536):
                out.write(data)
                out.flush()  # the test reads it while the connection is still open
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def main(host: str, upstream: tuple[str, int], record: Path) -> None:
    numbers = itertools.count()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = next(numbers)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(*upstream)
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(
            pump(reader, up_writer, record / f"{n:03}-in.bin"),
            pump(up_reader, writer, record / f"{n:03}-out.bin"),
        )

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


# -- taking a recording apart ----------------------------------------------------------------


@dataclass
class ClientStream:
    """What one client sent on one connection."""

    heads: list[bytes] = field(default_factory=list)  # each HTTP request's line and headers
    messages: list[bytes] = field(default_factory=list)  # WebSocket payloads, plain
    rest: bytes = b""  # bytes after the last complete request or frame


def _head_end(data: bytes, start: int) -> int:
    end = data.find(b"\r\n\r\n", start)
    return -1 if end < 0 else end + 4


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def client_stream(sent: bytes, answered: bytes) -> ClientStream:
    """Split what a client `sent` into HTTP request heads and, after a WebSocket upgrade (told
    by the server's 101 in `answered`), the messages of its frames, unmasked and reassembled.
    beach's server negotiates no compression; should it ever, this refuses the recording rather
    than look for plain text in deflated bytes."""
    out = ClientStream()
    pos = 0
    upgraded = answered.startswith(b"HTTP/1.1 101")
    while True:  # requests up to the upgrade (or all of them, on a plain HTTP connection)
        end = _head_end(sent, pos)
        if end < 0:
            out.rest = sent[pos:]
            return out
        head = sent[pos:end]
        out.heads.append(head)
        pos = end + _content_length(head)
        if upgraded and b"upgrade: websocket" in head.lower():
            break
    if b"permessage-deflate" in answered[: _head_end(answered, 0)].lower():
        raise ValueError("the server negotiated compression: messages cannot be read plainly")
    message = b""
    while len(sent) - pos >= 2:
        b0, b1 = sent[pos], sent[pos + 1]
        length, at = b1 & 0x7F, pos + 2
        if length == 126:
            length, at = int.from_bytes(sent[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(sent[at : at + 8], "big"), at + 8
        mask = sent[at : at + 4] if b1 & 0x80 else b"\0\0\0\0"
        at += 4 if b1 & 0x80 else 0
        if at + length > len(sent):
            break
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(sent[at : at + length]))
        pos = at + length
        if b0 & 0x0F >= 8:  # control frames stand alone, between a message's fragments too
            out.messages.append(payload)
            continue
        message += payload
        if b0 & 0x80:  # FIN: the message is complete
            out.messages.append(message)
            message = b""
    out.rest = sent[pos:]
    return out


def connections(record: Path) -> list[tuple[bytes, bytes]]:
    """Every recorded connection as (what the client sent, what the server answered)."""
    out = []
    for sent in sorted(record.glob("*-in.bin")):
        answered = sent.with_name(sent.name.replace("-in", "-out"))
        out.append((sent.read_bytes(), answered.read_bytes() if answered.exists() else b""))
    return out


if __name__ == "__main__":
    Path(sys.argv[4]).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(sys.argv[1], (sys.argv[2], int(sys.argv[3])), Path(sys.argv[4])))
