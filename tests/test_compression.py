"""The host's deflate units (wire/compression.py): compressed once for every joiner, and
inflated by one long-lived raw inflater per joiner whatever mix of compressors made them."""

from __future__ import annotations

import base64
import os
import zlib

from beach_cli.wire import compression


def ls_like(n: int) -> bytes:
    return b"".join(b"\x1b[01;34mdir%05d\x1b[0m  file-%05d.txt\r\n" % (i, i) for i in range(n))


def noise(n: int) -> bytes:
    return base64.b64encode(os.urandom(n))


def test_text_stays_with_level_one() -> None:
    enc = compression.Encoder()
    units = [enc.unit(ls_like(2_000)) for _ in range(5)]
    assert enc.huffman_left == 0
    assert sum(map(len, units)) < 5 * len(ls_like(2_000)) / 4


def test_output_that_barely_compresses_goes_huffman_only_for_a_while() -> None:
    enc = compression.Encoder()
    enc.unit(noise(30_000))  # level 1 leaves base64 at ~3/4 of its size
    assert enc.huffman_left == compression.HUFFMAN_FOR
    chunk = noise(48_000)
    huffman = enc.unit(chunk)
    assert len(huffman) < 0.8 * len(chunk)  # no worse than level 1 on such output
    while enc.huffman_left > 0:
        enc.unit(chunk)
    assert enc.unit(ls_like(2_000)) and enc.huffman_left == 0  # level 1 tries again


def test_one_inflater_takes_units_of_both_compressors_in_any_mix() -> None:
    enc = compression.Encoder()
    pieces = [noise(20_000), ls_like(500), noise(70_000), ls_like(3_000), b"", b"\x1b[H\x1b[2J"]
    pieces += [noise(5_000) for _ in range(30)] + [ls_like(100)]
    units = [enc.unit(p) for p in pieces]
    inflater = compression.decoder()
    out = b"".join(inflater.decompress(u) for u in units)
    assert out == b"".join(pieces)
    # A joiner may start at any unit (after a resync) and still decode the rest.
    late = compression.decoder()
    assert b"".join(late.decompress(u) for u in units[3:]) == b"".join(pieces[3:])
    # And a snapshot from a compressor of its own mixes in too.
    snap = compression.standalone(ls_like(50))
    assert late.decompress(snap) == ls_like(50)
    assert not late.unconsumed_tail and not late.eof
    assert zlib.decompressobj(compression.WBITS).decompress(units[0]) == pieces[0]
