"""beach's own transient line across a terminal that shows the shared screen
(screen/status_line.py), judged by what a terminal shows: everything written goes into one
pyte screen (the terminal), the shared output alone into another (the truth). The line shows
on the bottom row (the top one while the cursor is at the bottom), and once it is down the two
screens are the same, cell for cell and cursor, whatever the output was: colours, wide
characters, and hostile sequences that leave a terminal in an odd state (then: no line)."""

from __future__ import annotations

import asyncio

import pyte
import pytest
from oracle import XtermScreen, assert_same_screen, text_lines

from beach_cli.screen.history import ScreenHistory
from beach_cli.screen.status_line import MAX_REPLAY, StatusLine

COLS, ROWS = 40, 8
WAIT = 5.0  # s for a line to be decided (a model of a few KiB takes milliseconds)


class Terminal:
    """The terminal a host (or joiner) writes to, with the status line in front of it."""

    def __init__(self, shown: float = 60.0, before: bytes = b"") -> None:
        self.term = XtermScreen(COLS, ROWS)
        self._term = pyte.ByteStream(self.term)
        self.truth = XtermScreen(COLS, ROWS)
        self._truth = pyte.ByteStream(self.truth)
        self.history = ScreenHistory()
        # What the terminal showed before the output began (a host's banner), never in the
        # history: the model knows only where the cursor was then.
        self._term.feed(before)
        self._truth.feed(before)
        self.start: tuple[int, int] | None = (self.term.cursor.y, self.term.cursor.x)
        self.writes: asyncio.Queue[bytes] = asyncio.Queue()  # the line's own, as they come
        self.line = StatusLine(self._write, self._replay, shown=shown)
        self.decided: asyncio.Queue[bool] = asyncio.Queue()
        self.line.on_shown = self.decided.put_nowait

    def _write(self, data: bytes) -> None:
        self._term.feed(data)
        self.writes.put_nowait(data)

    def _replay(self, cols: int, rows: int) -> bytes | None:
        return self.history.model_replay(32 * 1024, cols, rows, self.start)

    def output(self, data: bytes) -> None:
        self._term.feed(self.line.before_output() + data)
        self._truth.feed(data)
        self.history.feed(data)

    async def show(self, text: str = "beach: someone joined") -> bool:
        self.line.show(text, COLS, ROWS)
        async with asyncio.timeout(WAIT):
            return await self.decided.get()

    def rows(self) -> list[str]:
        return text_lines(self.term, COLS, ROWS)


COLOURED = b"".join(
    b"\x1b[3%dmline %d \x1b[1;4%dmbold\x1b[0m\r\n" % (i % 8, i, i % 8) for i in range(3)
)
PROMPT = b"\x1b[32muser@box\x1b[0m:\x1b[34m~\x1b[0m$ "


async def test_a_line_across_the_bottom_then_the_screen_exactly_as_it_was() -> None:
    t = Terminal()
    t.output(COLOURED + PROMPT + b"ls \xe6\x97\xa5\xe6\x9c\xac")  # a wide pair before the cursor
    assert await t.show("beach: 14:02 alice joined (read-write)")
    assert t.rows()[ROWS - 1].strip() == "beach: 14:02 alice joined (read-write)"
    assert t.term.buffer[ROWS - 1][0].reverse
    assert t.rows()[: ROWS - 1] == text_lines(t.truth, COLS, ROWS)[: ROWS - 1]
    assert (t.term.cursor.x, t.term.cursor.y) == (t.truth.cursor.x, t.truth.cursor.y)
    t.output(b"x")  # the next output takes it down first
    assert_same_screen(t.truth, t.term)


async def test_the_top_row_while_the_cursor_is_on_the_bottom_one() -> None:
    t = Terminal()
    t.output(b"".join(b"\x1b[35mrow %d\x1b[0m\r\n" % i for i in range(ROWS - 1)) + PROMPT)
    assert t.truth.cursor.y == ROWS - 1
    assert await t.show("beach: bob left")
    assert t.rows()[0].strip() == "beach: bob left"
    assert t.rows()[1:] == text_lines(t.truth, COLS, ROWS)[1:]
    t.output(b"typed")
    assert_same_screen(t.truth, t.term)


async def test_it_goes_by_itself_and_the_row_comes_back() -> None:
    t = Terminal(shown=0.05)
    t.output(COLOURED + b"\x1b[7;1H\x1b[44m bottom row on blue \x1b[0m\x1b[2;5H" + b"\x1b[33m")
    assert await t.show()
    assert "someone joined" in t.rows()[ROWS - 1]
    t.writes.get_nowait()  # the line
    async with asyncio.timeout(WAIT):
        await t.writes.get()  # what takes it down
    assert not t.line.showing
    assert_same_screen(t.truth, t.term)
    t.output(b"yellow?")  # the attributes in effect came back too
    assert_same_screen(t.truth, t.term)
    assert t.term.buffer[1][5].fg == "brown"  # pyte's name for SGR 33


async def test_a_second_notice_takes_the_same_row_and_closing_puts_it_back() -> None:
    t = Terminal()
    t.output(COLOURED + PROMPT)
    assert await t.show("beach: first")
    t.line.show("beach: second", COLS, ROWS)  # drawn at once, over the first
    assert t.rows()[ROWS - 1].strip() == "beach: second"
    t._term.feed(t.line.close())
    assert_same_screen(t.truth, t.term)
    assert not t.line.showing


async def test_output_while_the_model_is_made_is_waited_out() -> None:
    t = Terminal()
    t.output(COLOURED + PROMPT)
    t.line.show("beach: busy", COLS, ROWS)
    t.output(b"more output")  # the model being made is stale: it is made again
    async with asyncio.timeout(WAIT):
        assert await t.decided.get()
    assert "beach: busy" in t.rows()[ROWS - 1]
    t.output(b"!")
    assert_same_screen(t.truth, t.term)


@pytest.mark.parametrize(
    "odd",
    [
        b"\x1b[?1049h\x1b[H\x1b[2Jfull screen",  # the alternate screen
        b"\x1b(0lqqk",  # line drawing in G0: our text would come out as lines
        b"\x0e",  # shifted out to G1
        b"\x1b[4h",  # insert mode
        b"\x1b[?6h",  # origin mode: our cursor moves would land elsewhere
        b"\x1b[1;1H" + b"x" * COLS,  # the cursor waiting to wrap
        b"".join(b"\x1b[%dm" % (31 + i % 7) for i in range(40)),  # more SGR than it can say
        b"\x1b[3",  # in the middle of a sequence
        b"\xe6\x97",  # in the middle of a character
    ],
)
async def test_no_line_where_it_could_not_be_put_back_exactly(odd: bytes) -> None:
    t = Terminal()
    t.output(COLOURED + PROMPT + odd)
    assert not await t.show()
    assert not t.line.showing
    t.output(b"z")
    assert_same_screen(t.truth, t.term)


async def test_hostile_output_is_modeled_from_its_recent_part_and_put_back() -> None:
    t = Terminal()
    # Absurd parameters, a huge SGR, an unterminated OSC, then lines and lines: only the
    # recent part is modeled (the bound on the CPU a peer's output can make it spend).
    t.output(b"\x1b[99999999;99999999H\x1b[" + b"1;" * 5000 + b"m\x1b]0;" + b"t" * 1000)
    t.output(b"\x07\x1b[0m\r\n" + b"junk junk\r\n" * (MAX_REPLAY // 8))
    assert len(t._replay(COLS, ROWS) or b"") < MAX_REPLAY
    assert await t.show()
    t.output(b"ok")
    assert_same_screen(t.truth, t.term)


async def test_no_line_when_the_recent_part_begins_inside_a_line() -> None:
    t = Terminal()
    t.output(PROMPT + b"junk " * (MAX_REPLAY // 4))  # one line wrapped over and over: its phase
    assert t._replay(COLS, ROWS) is None  # at the cut is unknown
    assert not await t.show()
    t.output(b"!")
    assert_same_screen(t.truth, t.term)


async def test_under_a_banner_the_model_knows_only_the_rows_below_it() -> None:
    banner = b"".join(b"\x1b[1mbanner line %d\x1b[0m\r\n" % i for i in range(3))
    t = Terminal(before=banner)
    t.output(PROMPT + b"echo hi\r\nhi\r\n" + PROMPT)
    assert await t.show()  # the bottom row: below the output
    assert t.rows()[:3] == ["banner line 0", "banner line 1", "banner line 2"]
    t.output(b"x")
    assert_same_screen(t.truth, t.term)
    # Scrolled to the bottom row, but not past the banner: the top row is the banner's, which
    # the model never saw (it must not be "put back" as blank): no line.
    t.output(b"\r\n" * 3 + PROMPT)
    assert t.truth.cursor.y == ROWS - 1
    assert text_lines(t.truth, COLS, ROWS)[0] == "banner line 1"
    assert not await t.show()
    t.output(b"\r\n" * ROWS + PROMPT)  # the banner scrolled away: known again
    assert await t.show()
    t.output(b"y")
    assert_same_screen(t.truth, t.term)


async def test_a_resize_forgets_the_line_without_writing() -> None:
    t = Terminal()
    t.output(COLOURED + PROMPT)
    assert await t.show()
    t.line.forget()
    assert not t.line.showing
    assert t.line.before_output() == b""  # nothing written over what the terminal reflowed
