"""`WrapAt` makes a wider terminal show what a PTY-sized one shows (beach_cli/wrap.py).

Oracle: the same stream drawn on a terminal of the PTY's width, and through `WrapAt` on a wider
one; the PTY-sized part of the wider screen must match cell by cell, cursor included."""

from __future__ import annotations

import random
import re

import pyte
import pytest
from oracle import XtermScreen, assert_same_screen

from beach_cli.join.wrap import WrapAt

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


# -- hostile parameters (issue 11, item 3) -------------------------------------------------------
# Any read-write joiner can print these; none may freeze or crash a wider or taller joiner.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from beach_cli.join.sequences import PARAM_MAX, param  # noqa: E402
from beach_cli.join.viewport import Viewport  # noqa: E402

ABSURD = st.sampled_from(
    [b"", b"0", b"1", b"7", b"80", b"999999999", b"4294967296", b"9" * 5000, b"0" * 6000 + b"5"]
)
FINALS = st.sampled_from(list(b"@ABCDEFGHIJKLMPSTXZ`abcdefghlmnqrsu"))


@st.composite
def hostile_piece(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["csi", "private", "text", "ctl", "esc", "osc"]))
    if kind == "csi":
        params = b";".join(draw(st.lists(ABSURD, min_size=0, max_size=3)))
        return b"\x1b[" + params + bytes([draw(FINALS)])
    if kind == "private":
        return b"\x1b[?" + draw(ABSURD) + draw(st.sampled_from([b"h", b"l"]))
    if kind == "text":
        return draw(st.sampled_from([b"abc", b"x" * 30, "漢".encode(), b"\xff", b"e\xcc\x81"]))
    if kind == "ctl":
        return draw(st.sampled_from([b"\r", b"\n", b"\t", b"\b", b"\0" * 50, b"\r\n"]))
    if kind == "esc":
        return draw(st.sampled_from([b"\x1b7", b"\x1b8", b"\x1bc", b"\x1bD", b"\x1bM", b"\x1bE"]))
    return b"\x1b]0;" + draw(ABSURD)[:100] + b"\x07"


@settings(max_examples=300, deadline=None)  # a loaded machine is no failure
@given(st.lists(hostile_piece(), min_size=1, max_size=40), st.integers(0, 200))
def test_absurd_parameters_never_raise_nor_loop(pieces: list[bytes], cut: int) -> None:
    stream = b"".join(pieces)
    view = Viewport((WIDE, ROWS + 10), (COLS, ROWS))  # wider and taller: wrap and clamp on
    out = view.filter(stream[:cut]) + view.filter(stream[cut:])
    assert view._wrap is not None and 0 <= view._wrap.col <= COLS
    # Bounded: at most a few bytes per byte in, plus one line's worth per repeat.
    assert len(out) <= 4 * len(stream) + 64 * ROWS * stream.count(b"b") + 64


@st.composite
def pyte_piece(draw: st.DrawFn) -> bytes:
    """A sequence pyte implements (it caps counts at 9999) with an absurd count, or text."""
    if draw(st.booleans()):
        return draw(st.sampled_from([b"abc ", b"x" * 30, "漢".encode(), b"\r\n", b"\t", b"\b"]))
    count = draw(st.sampled_from([b"", b"1", b"80", b"999999999", b"4294967296"]))
    if draw(st.booleans()):
        final = draw(st.sampled_from(list(b"Hf")))
        other = draw(st.sampled_from([b"1", b"999999999"]))
        return b"\x1b[" + count + b";" + other + bytes([final])
    final = draw(st.sampled_from(list(b"@ABCDEGJKLMPXad")))
    if final in b"JK":  # erasures take a mode, not a count
        count = draw(st.sampled_from([b"", b"0", b"1", b"2"]))
    return b"\x1b[" + count + bytes([final])


@settings(max_examples=200, deadline=None)  # a loaded machine is no failure
@given(st.lists(pyte_piece(), min_size=1, max_size=30))
def test_absurd_counts_match_the_pty(pieces: list[bytes]) -> None:
    """Where pyte knows the sequence, the wider screen matches the PTY-sized one."""
    truth, seen = both(b"".join(pieces))
    assert_same_screen(truth, seen)


def test_param_is_clamped_without_parsing_giant_ints() -> None:
    assert param(b"9" * 100_000) == PARAM_MAX
    assert param(b"0" * 100_000 + b"7") == 7
    assert param(b"") == 0 and param(b"", 1) == 1


def test_tab_forward_with_a_huge_count_stops_at_the_pty_edge() -> None:
    # The old loop ran once per count: 999999999 of them froze the joiner for ~4 minutes.
    wrap = WrapAt(COLS, ROWS)
    out = wrap.feed(b"A\x1b[999999999IX\x1b[4294967296Z<")
    seen = XtermScreen(WIDE, ROWS)
    pyte.ByteStream(seen).feed(out)
    assert seen.display[0][COLS - 1] == "X" and seen.display[0][0] == "<"
    assert seen.display[0][COLS:].strip() == ""


def test_scroll_region_with_a_5000_digit_parameter_is_clamped() -> None:
    view = Viewport((COLS, ROWS + 10), (COLS, ROWS))
    assert view.filter(b"\x1b[" + b"9" * 5000 + b";" + b"9" * 5000 + b"r") == (
        b"\x1b[%d;%dr" % (ROWS, ROWS)
    )
    assert view.filter(b"\x1b[2;" + b"9" * 5000 + b"r") == b"\x1b[2;%dr" % ROWS


def test_repeat_wraps_at_the_pty_edge_in_lines_not_characters() -> None:
    wrap = WrapAt(COLS, ROWS)
    out = wrap.feed(b"ab\x1b[45b|")  # 45 more b: the rest of this line, a full one, then 7
    assert out == b"abb\x1b[17b\r\nbb\x1b[18b\r\nbb\x1b[5b|"
    huge = WrapAt(COLS, ROWS).feed(b"x\x1b[999999999b")
    assert len(huge) < 16 * (ROWS + 2)  # one short REP per line, never a character each


# -- sequences cut by a frame's end, however long (the CI failure of session 4) ----------------
# The host's frames may cut a 5000-digit sequence anywhere. The cut piece used to be looked for
# only in a frame's last 16 (viewport) or 4096 (wrap) bytes: cut deeper, it reached the terminal
# unclamped, and its digits counted as printed text.

LONG = [  # each ends where pyte and xterm agree on the cursor (pyte homes it on no `CSI r`)
    b"A\x1b[" + b"7" * 5000 + b"CY\r\n",  # forward: Y on the PTY's last column
    b"\x1b[" + b"9" * 5000 + b"r\x1b[r\x1b[H",  # a scroll region with a 5000-digit top
    b"\x1b[" + b"3" * 5000 + b";" + b"2" * 5000 + b"Hc\r\n",
    b"\x1b[3;1H\x1b[" + b"0" * 6000 + b"5CZ\r\n",  # leading zeros: 5 forward
    "\x1b]0;a long title 漢字 ".encode() * 400 + b"\x07after\r\n",  # a 9 KB string
    b"\x1b]2;" + b"t" * 7000 + b"\x1b\\B\r\n",  # ended by ST
]


def pyte_safe(data: bytes) -> bytes:
    """pyte int()s a parameter whole (and raises past 4300 digits); it clamps at 9999 anyway."""
    return re.sub(rb"\d{5,}", lambda m: b"%d" % min(param(m.group()), 9999), data)


def screen_of(data: bytes, cols: int, rows: int) -> pyte.Screen:
    screen = XtermScreen(cols, rows)
    pyte.ByteStream(screen).feed(pyte_safe(data))
    return screen


@settings(max_examples=300, deadline=None)  # a loaded machine is no failure
@given(st.lists(st.sampled_from(LONG), min_size=1, max_size=4), st.data())
def test_a_long_sequence_cut_anywhere_is_the_same_sequence(pieces: list[bytes], data) -> None:
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = Viewport((WIDE, ROWS + 10), (COLS, ROWS))
    view = Viewport((WIDE, ROWS + 10), (COLS, ROWS))
    # The joiner starts by setting the scroll region to the PTY's rows.
    expected = whole.resize() + whole.filter(stream)
    got = view.resize() + b"".join(view.filter(chunk) for chunk in chunks)
    assert view._wrap is not None and whole._wrap is not None
    assert view._wrap.col == whole._wrap.col
    assert_same_screen(screen_of(expected, WIDE, ROWS + 10), screen_of(got, WIDE, ROWS + 10))
    # And what reaches the terminal is what a PTY-sized one shows (the part pyte knows).
    truth = screen_of(stream, COLS, ROWS)
    seen = screen_of(got, WIDE, ROWS + 10)
    for y in range(ROWS):
        assert [seen.buffer[y][x].data for x in range(COLS)] == [
            truth.buffer[y][x].data for x in range(COLS)
        ]
        assert "".join(seen.buffer[y][x].data for x in range(COLS, WIDE)).strip() == ""


@pytest.mark.parametrize("taller", [False, True], ids=["wrap-only", "wrap-and-clamp"])
@pytest.mark.parametrize(
    "endless",
    [
        pytest.param(b"\x1b[" + b"9" * 100_000, id="digits"),
        pytest.param(b"\x1b[" + b"1;" * 50_000, id="parameters"),
        pytest.param(b"\x1b[1" + b"!" * 100_000, id="intermediates"),
        pytest.param(b"\x1b" + b" " * 100_000, id="escape-intermediates"),
    ],
)
def test_an_endless_sequence_is_carried_in_few_bytes(endless: bytes, taller: bool) -> None:
    """Frame after frame of one sequence that never ends: the carry stays small, so neither
    memory nor the cost of a frame grows with it; its end then acts once, clamped."""
    rows = ROWS + 10 if taller else ROWS
    view = Viewport((WIDE, rows), (COLS, ROWS))
    out = bytearray(view.filter(b"x" + endless[:10]))
    for i in range(10, len(endless), 4096):
        out += view.filter(endless[i : i + 4096])
        assert view._wrap is not None
        assert len(view._wrap._carry) <= 256 and len(view._carry) <= 256
    out += view.filter(b"C|")
    assert len(out) < 1024
    assert view._wrap.col <= COLS


def test_the_viewport_alone_carries_a_long_cut_scroll_region() -> None:
    """Only taller, not wider: no wrap, the viewport's own carry clamps the region."""
    view = Viewport((COLS, ROWS + 10), (COLS, ROWS))
    seq = b"\x1b[" + b"9" * 5000 + b";" + b"9" * 5000 + b"r"
    out = view.filter(seq[:7000]) + view.filter(seq[7000:])
    assert out == b"\x1b[%d;%dr" % (ROWS, ROWS)
    assert len(view._carry) == 0


def test_a_string_cut_by_frames_moves_no_cursor() -> None:
    """A title split in many frames (one cut inside a UTF-8 character) prints nothing."""
    title = b"\x1b]0;" + "漢字 title ".encode() * 2000 + b"\x07"
    wrap = WrapAt(COLS, ROWS)
    out = wrap.feed(b"ab")
    for i in range(0, len(title), 1001):  # 1001: cuts land inside the wide characters
        out += wrap.feed(title[i : i + 1001])
        assert len(wrap._carry) <= 3
    out += wrap.feed(b"c")
    assert out == b"ab" + title + b"c"
    assert wrap.col == 3
