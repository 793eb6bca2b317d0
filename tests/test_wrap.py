"""`WrapAt` makes a wider terminal show what a PTY-sized one shows (beach_cli/wrap.py).

Oracle: the same stream drawn on a terminal of the PTY's width, and through `WrapAt` on a wider
one; the PTY-sized part of the wider screen must match cell by cell, cursor included."""

from __future__ import annotations

import random

import pyte
import pytest
from oracle import XtermScreen, assert_same_screen

from beach_cli.wrap import WrapAt

COLS, ROWS, WIDE = 20, 8, 33


def both(*chunks: bytes, cols: int = COLS, wide: int = WIDE) -> tuple[pyte.Screen, pyte.Screen]:
    truth, seen = XtermScreen(cols, ROWS), XtermScreen(wide, ROWS)
    wrap = WrapAt(cols)
    pyte.ByteStream(truth).feed(b"".join(chunks))
    stream = pyte.ByteStream(seen)
    for chunk in chunks:
        stream.feed(wrap.feed(chunk))
    return truth, seen


@pytest.mark.parametrize(
    "stream",
    [
        b"a" * 50 + b"\r\nnext",
        b"x" * 20 + b"\r\nexactly full, then CR LF",
        b"y" * 20 + b"\nLF only after a full line",
        b"z" * 20 + b"\bback",
        b"w" * 20 + b"\x1b[31m colour at the edge\x1b[0m",
        b"v" * 20 + b"\x1b[Kerase at the edge",
        b"u" * 19 + "漢字 wide at the edge".encode(),
        "漢字テスト😀".encode() * 4,
        b"tabs\tat\tthe\tedge\tof\tthe\tline",
        b"\x1b[5;40Hcup past the edge|",
        b"\x1b[3;5H\x1b[99Cforward past the edge|",
        b"\x1b[45Gcha past the edge|",
        b"\x1b[?7l" + b"no autowrap " * 5 + b"\r\nnext",
        b"\x1b7" + b"s" * 25 + b"\x1b8restored",
        b"\x1b[?1049h" + b"alt " * 10 + b"\x1b[?1049l" + b"main " * 6,
        b"split " * 8 + b"\x1b[1",
        b"e\xcc\x81 combining " * 4,
        b"\x1b]0;a title that is long enough to wrap if it were text\x07after title " * 2,
    ],
)
def test_wider_terminal_matches_the_pty(stream: bytes) -> None:
    truth, seen = both(stream)
    assert_same_screen(truth, seen)


def test_sequences_split_across_chunks() -> None:
    data = ("a" * 18 + "\x1b[31m漢字\x1b[0m" + "b" * 30 + "\x1b[2;30Hc").encode()
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]
    truth, seen = both(*chunks)
    assert_same_screen(truth, seen)


def test_random_streams() -> None:
    rng = random.Random(1234)
    pieces = [
        b"word ",
        b"longerword ",
        b"\r\n",
        b"\n",
        b"\r",
        b"\t",
        b"\b",
        "漢".encode(),
        "😀".encode(),
        b"\x1b[31m",
        b"\x1b[0m",
        b"\x1b[K",
        b"\x1b[3C",
        b"\x1b[2D",
        b"\x1b[12G",
        b"\x1b[4;7H",
        b"\x1b[A",
        b"\x1b7",
        b"\x1b8",
        b"x" * 19,
        b"\x1b[2J",
        b"\x1b[?7l",
        b"\x1b[?7h",
        b"\x1bD",
        b"\x1bM",
        b"\x1b[5X",
        b"\x1b[2P",
        b"\x1b[3@",
        b"\x1b[30;40H",
        "é".encode(),
        b"\x1b]2;title\x07",
    ]
    for _ in range(1000):
        stream = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
        cut = rng.randint(0, len(stream))
        truth, seen = both(stream[:cut], stream[cut:])
        assert_same_screen(truth, seen)
