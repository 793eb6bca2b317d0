"""Predictive echo on the joiner (join/echo.py, join/predict.py, screen/model.py), judged by
what a terminal shows: every byte the joiner writes goes into one pyte screen (the joiner's
terminal), the host's output alone into another (the host's screen). Guesses show at once,
wrong ones go when the host's ECHO comes, and once no guess is drawn the two screens are the
same, cell for cell."""

from __future__ import annotations

import re

import pyte
import pytest
from oracle import XtermScreen

from beach_cli.join import echo as echo_mod
from beach_cli.join.echo import PredictiveEcho
from beach_cli.wire.frames import ECHO_OTHERS, ECHO_SECRET

SLOW = 0.2  # s of round trip: guesses show, underlined
MEDIUM = 0.1  # shown, not underlined


class Duo:
    def __init__(self, mode: str = "always", cols: int = 40, rows: int = 6) -> None:
        self.clock = 1000.0
        self.echo = PredictiveEcho(mode, clock=lambda: self.clock)
        self.echo.start((cols, rows), True)
        self.echo.fresh_screen()  # the first SNAPSHOT
        self.term = XtermScreen(cols, rows)  # pyte, with xterm's alternate screen
        self._term = pyte.ByteStream(self.term)
        self.answers: list[str] = []  # the terminal's answers on the joiner's input (DSR)
        self.term.write_process_input = self.answers.append
        self.host = XtermScreen(cols, rows)
        self._host = pyte.ByteStream(self.host)
        self.offset = 0
        self.written = bytearray()  # everything the joiner wrote to its terminal
        self.extra = bytearray()  # what it wrote beyond the host's output

    def _write(self, data: bytes) -> None:
        self.written += data
        self._term.feed(data)
        while self.answers:  # as join/session.py takes them off its input
            m = re.fullmatch(r"\x1b\[(\d+);(\d+)R", self.answers.pop(0))
            assert m is not None
            self.echo.answer(int(m.group(1)), int(m.group(2)))

    def output(self, data: bytes) -> None:
        before = self.echo.before_output()
        after = self.echo.after_output(data)
        self.extra += before + after
        self._host.feed(data)
        self._write(before + data + after)

    def key(self, data: bytes, rtt: float | None = MEDIUM) -> bytes:
        self.offset += len(data)
        out = self.echo.key(data, self.offset, rtt)
        self.extra += out
        self._write(out)
        return out

    def ack(self, flags: int = 0, offset: int | None = None) -> bytes:
        out = self.echo.echo(self.offset if offset is None else offset, flags)
        self.extra += out
        self._write(out)
        return out

    def typed(self, data: bytes, echo: bytes | None = None) -> None:
        """A key the host echoes (as `echo`, else as itself) and acknowledges."""
        self.key(data)
        self.output(data if echo is None else echo)
        self.ack()

    def row(self, n: int = 0) -> str:
        return self.term.display[n].rstrip()

    def host_row(self, n: int = 0) -> str:
        return self.host.display[n].rstrip()

    def same(self) -> bool:
        cursor = (self.term.cursor.x, self.term.cursor.y) == (
            self.host.cursor.x,
            self.host.cursor.y,
        )
        return self.term.display == self.host.display and cursor

    def confirmed_prompt(self) -> None:
        """A prompt, and one keystroke answered: the epoch is confirmed, guesses show."""
        self.output(b"$ ")
        self.typed(b"l")
        assert self.same()


def test_the_first_key_waits_for_the_host_then_typing_shows_at_once() -> None:
    d = Duo()
    d.output(b"$ ")
    assert d.key(b"l") == b""  # a tentative epoch: nothing shown before the host confirms
    assert d.row() == "$"
    d.output(b"l")
    d.ack()
    assert d.same()
    d.key(b"s")
    assert d.row() == "$ ls" and d.host_row() == "$ l"  # shown before the host has it
    assert (d.term.cursor.x, d.term.cursor.y) == (4, 0)
    d.output(b"s")
    d.ack()
    assert d.same()
    assert d.echo.predictor.stats.shown == 1 and d.echo.predictor.stats.wrong == 0


def test_a_wrong_guess_is_taken_back_and_the_screen_is_the_hosts() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"x")
    assert d.row() == "$ lx"
    d.output(b"X")  # the program echoes in capitals: its output replaces the guess at once
    assert d.row() == "$ lX"
    d.ack()
    assert d.same()
    assert d.echo.predictor.stats.wrong == 1
    d.key(b"y")  # after a wrong guess, the next epoch is tentative again
    assert d.row() == "$ lX"


def test_a_key_the_host_never_echoes_disappears_with_its_ack() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"q")
    assert d.row() == "$ lq"
    d.ack()  # answered, and nothing came out
    assert d.same() and d.row() == "$ l"


def test_a_password_prompt_never_shows_what_is_typed() -> None:
    d = Duo()
    d.confirmed_prompt()
    # The host says the PTY reads a password right behind the prompt (host/session.py
    # _check_secret), before any key of it is typed.
    d.output(b"\r\nPassword: ")
    d.ack(ECHO_SECRET)
    start = len(d.written)
    for ch in b"QZXJ":
        d.key(bytes([ch]))
    d.ack(ECHO_SECRET)
    assert not set(d.written[start:]) & set(b"QZXJ")
    assert d.same()


def test_after_enter_guesses_wait_for_a_confirmation_so_a_secret_never_shows() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"\r")  # a new epoch: it could be a password prompt, nothing is shown until confirmed
    start = len(d.written)
    for ch in b"QZXJ":
        d.key(bytes([ch]))
    d.output(b"\r\nPassword: ")
    d.ack(ECHO_SECRET)
    assert not set(d.written[start:]) & set(b"QZXJ")
    assert d.same()


def test_someone_else_typing_drops_every_guess() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"a")
    d.key(b"b")
    assert d.row() == "$ lab"
    d.output(b"zz")  # another writer's keys reached the PTY first
    d.ack(ECHO_OTHERS)
    assert d.same() and d.row() == "$ lzz"


def test_insertion_in_the_middle_and_backspace_as_readline_redraws() -> None:
    d = Duo()
    d.output(b"$ ")
    for ch in b"hello":
        d.typed(bytes([ch]))
    for _ in range(3):  # left arrow: readline moves back
        d.typed(b"\x1b[D", b"\b")
    assert d.term.cursor.x == 4
    d.key(b"X")  # an insertion: the rest of the line moves right, at once
    assert d.row() == "$ heXllo" and d.term.cursor.x == 5
    d.output(b"Xllo\b\b\b")  # readline's redraw
    d.ack()
    assert d.same()
    d.key(b"\x7f")  # backspace: the character before the cursor goes, the rest moves left
    assert d.row() == "$ hello" and d.term.cursor.x == 4
    d.output(b"\bllo \b\b\b\b")
    d.ack()
    assert d.same()
    assert d.echo.predictor.stats.wrong == 0


def test_guesses_are_underlined_on_a_slow_link_only() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"a", rtt=SLOW)
    assert d.term.buffer[0][3].underscore
    d.output(b"a")
    d.ack()
    d.key(b"b", rtt=MEDIUM)  # still above UNDERLINE_OFF: stays underlined (hysteresis)
    assert d.term.buffer[0][4].underscore
    d.output(b"b")
    d.ack()
    d.key(b"c", rtt=0.09)
    assert not d.term.buffer[0][5].underscore and d.row() == "$ labc"


@pytest.mark.parametrize("mode,rtt", [("never", SLOW), ("auto", 0.005), ("auto", 0.025)])
def test_without_prediction_the_output_is_the_hosts_byte_for_byte(mode: str, rtt: float) -> None:
    d = Duo(mode)
    d.output(b"$ ")
    for ch in b"echo hi":
        d.key(bytes([ch]), rtt=rtt)
        d.output(bytes([ch]))
        d.ack()
    d.key(b"\r", rtt=rtt)
    d.output(b"\r\nhi\r\n$ ")
    d.ack()
    assert d.extra == b""
    assert bytes(d.written) == b"$ echo hi\r\nhi\r\n$ "


def test_auto_shows_guesses_only_above_its_threshold() -> None:
    d = Duo("auto")
    d.output(b"$ ")
    for ch in b"ab":  # below SHOW_ON: not even modelled
        assert d.key(bytes([ch]), rtt=0.05) == b""
        d.output(bytes([ch]))
        d.ack()
    assert d.echo.model is None
    assert d.key(b"c", rtt=0.07) == echo_mod.ASK_CURSOR  # above: modelled, checked...
    d.output(b"c")
    d.ack()
    d.typed(b"d")  # ...confirmed
    d.key(b"e", rtt=0.05)  # and shown until the round trip falls to SHOW_OFF
    assert d.row() == "$ abcde"
    d.output(b"e")
    d.ack()
    assert d.key(b"f", rtt=0.035) == b""
    assert d.echo.model is None


def test_a_typo_fixed_quickly_never_shows_the_typo_again() -> None:
    d = Duo()
    d.output(b"$ ")
    for ch in b"hel":
        d.typed(bytes([ch]))
    seen = []
    for key in (b"l", b"p", b"\x7f", b"o"):  # typed faster than the round trip
        d.key(key)
        seen.append(d.row())
    assert seen == ["$ hell", "$ hellp", "$ hell", "$ hello"]
    for echo in (b"l", b"p", b"\b \b", b"o"):  # the host's echoes of each, in turn
        d.output(echo)
        assert d.row() == "$ hello", d.row()  # never back to a line already left
    d.ack()
    assert d.same()


@pytest.mark.parametrize(
    "setup",
    [
        b"\x1b[?1049h",  # the alternate screen: a full-screen program decides
        b"\x1b[4h",  # insert mode
        b"\x1b(0",  # the line-drawing character set (pyte ignores it in UTF-8; terminals do not)
        b"\x0e",  # shifted to G1
        b"\x1b[2;5r\x1b[?6h",  # origin mode
        b"x" * 35,  # the line reaches the last column
        b"\xe6\x97\xa5\b\b",  # a wide character after the cursor (it would move)
    ],
)
def test_no_guess_where_it_could_not_be_exact(setup: bytes) -> None:
    d = Duo()
    d.confirmed_prompt()
    d.output(setup)
    start = len(d.extra)
    d.key(b"d")
    d.key(b"e")
    assert d.extra[start:] == b""
    d.output(b"de")
    d.ack()
    assert d.same()


def test_nothing_is_drawn_inside_a_sequence_the_output_left_open() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.output(b"\x1b[3")  # the rest of this sequence is in the next read
    assert d.key(b"a") == b""
    d.output(b"1m")
    d.ack()
    assert d.same()


def test_a_paste_is_not_guessed() -> None:
    d = Duo()
    d.confirmed_prompt()
    assert d.key(b"x" * 100) == b""
    d.output(b"x" * 30)
    d.ack()
    assert d.same()


def test_the_attributes_in_effect_are_the_hosts_again_after_a_guess() -> None:
    d = Duo()
    d.output(b"\x1b[2;31m$ ")  # faint red: faint is beyond pyte's model, said back as it came
    d.typed(b"l")
    d.key(b"s")
    assert d.written.endswith(b"\x1b[0m\x1b[2;31m")
    d.output(b"s")
    d.ack()
    d.output(b"!")
    assert d.term.buffer[0][4].fg == "red" and d.same()


def test_bulk_output_pauses_the_model_and_calm_output_brings_it_back() -> None:
    d = Duo()
    d.confirmed_prompt()
    for i in range(8000):  # a build: line after line (~100 kB within a second)
        d.output(b"line %d\r\n" % i)
    assert d.echo.model is None  # too fast to model: no guesses, no cost
    d.output(b"$ ")
    assert d.key(b"a") == b""
    d.clock += 2.5  # calm again: the model is made from the recent output...
    d.output(b"a")
    d.ack()
    assert d.key(b"b") == echo_mod.ASK_CURSOR  # ...and checked against the terminal's cursor
    assert d.echo.verified
    d.output(b"b")
    d.ack()
    d.key(b"c")
    d.output(b"c")
    d.ack()
    d.key(b"d")
    assert d.row(5) == "$ abcd" and d.host_row(5) == "$ abc"
    d.output(b"d")
    d.ack()
    assert d.same()


def test_a_model_whose_cursor_is_not_the_terminals_is_never_guessed_against() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.output(b"z" * (echo_mod.FEED_BUDGET + 1))  # one line, wrapped far past the cut
    d.output(b"\r\n$ ")
    d.clock += 2.5
    for ch in b"abcdef":
        d.key(bytes([ch]))
        d.output(bytes([ch]))
        d.ack()
    assert not d.echo.verified
    assert d.echo.predictor.stats.shown == 0 and d.same()


def test_after_a_full_screen_program_the_model_is_made_again_and_checked() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.output(b"\x1b[?1049h\x1b[H\x1b[2Jvim's own screen\x1b[5;1H~")
    d.key(b"i")
    d.output(b"\x1b[?1049l")  # back: the main screen and its cursor, which pyte alone loses
    assert d.echo.model is None
    assert d.key(b"s") == echo_mod.ASK_CURSOR and d.echo.verified
    d.output(b"s")
    d.ack()
    d.typed(b"x")
    d.key(b"y")
    assert d.row() == "$ lsxy" and d.host_row() == "$ lsx"
    d.output(b"y")
    d.ack()
    assert d.same()


def test_a_fresh_screen_drops_the_guesses_it_redraws() -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"a")
    d.echo.fresh_screen()
    d.output(b"\x1b[H\x1b[2J$ la")
    d.ack()
    assert d.same()


@pytest.mark.parametrize(
    "offset,flags", [(2**63 - 1, 0), (0, 0), (5, 255), (2**63 - 1, ECHO_SECRET | 0xF0)]
)
def test_an_absurd_echo_from_the_host_leaves_the_hosts_screen(offset: int, flags: int) -> None:
    d = Duo()
    d.confirmed_prompt()
    d.key(b"a")
    d.key(b"b")
    d.output(b"Q")
    d.ack(flags, offset=offset)
    d.output(b"!")
    if d.echo.predictor.cells:  # guesses it did not judge yet stay drawn, over the host's
        d.ack()
    assert d.same()


def test_the_host_is_asked_for_echoes_only_while_guesses_show() -> None:
    told: list[bool] = []
    e = PredictiveEcho("auto")
    e.on_want = told.append
    e.start((40, 6), True)
    e.key(b"a", 1, 0.005)
    assert told == []  # a fast link: the host is never bothered
    e.key(b"b", 2, 0.08)
    e.key(b"c", 3, 0.07)
    e.key(b"d", 4, 0.03)
    assert told == [True, False]
    e.start((40, 6), True)  # a new connection: said again when it matters
    e.key(b"e", 5, 0.08)
    assert told == [True, False, True]
    always: list[bool] = []
    a = PredictiveEcho("always")
    a.on_want = always.append
    a.start((40, 6), True)
    assert always == [True]


def test_an_echo_before_any_screen_is_ignored() -> None:
    e = PredictiveEcho("always")
    assert e.echo(12, 0) == b""
    assert e.key(b"a", 1, SLOW) == b""  # no HELLO yet: the host has not said it judges


def test_keystrokes_that_are_not_text_start_a_tentative_epoch() -> None:
    d = Duo()
    d.confirmed_prompt()
    for key in (b"\x1b[A", b"\t", b"\x03", b"\xff\xfe"):
        before = d.echo.predictor.epoch
        d.key(key)
        assert d.echo.predictor.epoch > before
        d.ack()
    assert d.same()
