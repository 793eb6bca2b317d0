"""Cutting a long stream body into frames: the host's sender cuts output to the data channel's
frame size, and the relay cuts again to what one relayed message holds."""

from __future__ import annotations

from collections.abc import Iterator

from ..wire.frames import Frame, encode_frame

# The bodies of these kinds are one stream (zlib, or plain bytes) that the joiner takes in any
# pieces, so a SNAPSHOT may continue as OUTPUT frames without changing meaning.
STREAM_KINDS = (Frame.OUTPUT, Frame.SNAPSHOT)


def chunked(kind: Frame, body: bytes, limit: int) -> Iterator[bytes]:
    """`body` as frames of at most `limit` body bytes: the first of `kind`, the rest OUTPUT."""
    yield encode_frame(kind, body[:limit])
    for i in range(limit, len(body), limit):
        yield encode_frame(Frame.OUTPUT, body[i : i + limit])
