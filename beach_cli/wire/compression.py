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


# Output that level 1 can barely shrink (random-looking text: base64, hex dumps) finds no
# matches to be worth searching for: Huffman coding alone shrinks it as much at a quarter of the
# CPU. A unit of at least HUFFMAN_TRIAL bytes that level 1 leaves above POOR of its size sends
# the next HUFFMAN_FOR bytes of output through a Huffman-only compressor, then level 1 tries
# again. Units of either compressor end in a full flush, so one inflater takes them in any mix.
HUFFMAN_TRIAL = 4096
POOR = 0.5
HUFFMAN_FOR = 1024 * 1024


class Encoder:
    def __init__(self) -> None:
        self._z = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS)
        self._huffman = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS, 8, zlib.Z_HUFFMAN_ONLY)
        self.huffman_left = 0  # bytes of output still to go Huffman-only

    def unit(self, data: bytes) -> bytes:
        if self.huffman_left > 0:
            self.huffman_left = max(0, self.huffman_left - len(data))
            return self._huffman.compress(data) + self._huffman.flush(zlib.Z_FULL_FLUSH)
        out = self._z.compress(data) + self._z.flush(zlib.Z_FULL_FLUSH)
        if len(data) >= HUFFMAN_TRIAL and len(out) > POOR * len(data):
            self.huffman_left = HUFFMAN_FOR
        return out


def standalone(data: bytes) -> bytes:
    """A unit from a compressor of its own (for one joiner's snapshot)."""
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS)
    return z.compress(data) + z.flush(zlib.Z_FULL_FLUSH)


def decoder() -> zlib._Decompress:
    return zlib.decompressobj(WBITS)
