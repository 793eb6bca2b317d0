"""Compress once, send to every joiner.

Each PTY read becomes one "unit": raw deflate, ended with a full flush. A full flush resets the
compressor's history and byte-aligns the stream, so every unit decodes on its own, in any
order of arrival after any other unit, with one long-lived raw inflater per joiner. The host
therefore compresses each chunk once, however many joiners there are, and a joiner may start
(or restart after a resync) at any unit. Snapshots are units too, from a fresh compressor.
"""

from __future__ import annotations

import zlib

FEATURE = "deflate"  # negotiated in HELLO
LEVEL = 1  # terminal output compresses several-fold even at the fastest level
WBITS = -15  # raw deflate: no header, so a joiner can start at any unit


class Encoder:
    def __init__(self) -> None:
        self._z = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS)

    def unit(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_FULL_FLUSH)


def standalone(data: bytes) -> bytes:
    """A unit from a compressor of its own (for one joiner's snapshot)."""
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS)
    return z.compress(data) + z.flush(zlib.Z_FULL_FLUSH)


def decoder() -> zlib._Decompress:
    return zlib.decompressobj(WBITS)
