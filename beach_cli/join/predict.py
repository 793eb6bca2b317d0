"""Predictive echo's guesses: what the host's screen will show once it has a keystroke, made
at once, and judged against the host's screen when its ECHO says the keystroke was answered.

As mosh does: a printable character is an insertion at the predicted cursor, backspace a
deletion before it, left and right move it. Each predicted cell remembers the input offset
that makes it due, and the epoch it belongs to. Enter, any other control key or escape
sequence, up and down, and anything this cannot predict start a new epoch, which is
*tentative*: its guesses are not shown until one of them is confirmed. So a password typed
after Enter never shows, and after a new prompt the first keystroke waits one round trip
while the rest appear at once.

When an ECHO covers a cell, the model (screen/model.py) holds the host's answer: a match
confirms the cell's epoch; a mismatch in a shown epoch clears every guess (the host's screen
is what remains), in a tentative one it drops that epoch's guesses silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyte.screens import Char
from wcwidth import wcwidth

from ..screen.model import ScreenModel

PASTE = 16  # characters in one read: a paste, not typing (no guess)
_LEFT = (b"\x1b[D", b"\x1bOD")
_RIGHT = (b"\x1b[C", b"\x1bOC")
_BACKSPACE = (0x7F, 0x08)


@dataclass(slots=True)
class Guess:
    """One predicted cell."""

    char: str
    attrs: Char  # how it is drawn (the typed character: the attributes in effect)
    due: int  # the input offset after the keystroke that made it
    epoch: int
    seen: str  # the model's character there when guessed: once it differs, the host has spoken
    typed: bool  # the keystroke's own character (else a neighbour it moved)
    shown: bool = False


@dataclass(slots=True)
class Stats:
    keys: int = 0  # keystrokes that could be guessed at
    shown: int = 0  # keystrokes whose guess was drawn before the host's echo
    confirmed: int = 0  # cells the host's screen matched
    wrong: int = 0  # shown cells it did not
    resets: int = 0


class Predictor:
    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], Guess] = {}
        self.cursor: tuple[int, int] | None = None  # predicted; None: the model's
        self.cursor_due = 0
        self.cursor_epoch = 0
        self.epoch = 0
        self.confirmed = -1  # the newest epoch with a confirmed guess
        self.stats = Stats()

    # -- keystrokes -----------------------------------------------------------------------------

    def tentative(self) -> None:
        """What comes next cannot be placed from what we know: a new, unconfirmed epoch."""
        self.epoch += 1
        self.cursor = None

    def reset(self) -> None:
        """Forget every guess (the host's screen is what shows)."""
        self.cells.clear()
        self.tentative()

    def key(self, model: ScreenModel, data: bytes, end: int, may_guess: bool) -> None:
        """Keystrokes that end at input offset `end`."""
        if not may_guess:
            self.reset()
            return
        if data in _LEFT or data in _RIGHT:
            self._arrow(model, data in _RIGHT, end)
            return
        if data[:1] == b"\x1b":  # up, down, function keys, Alt-x, a bracketed paste...
            self.tentative()
            return
        if len(data) > 4 * PASTE:
            self.reset()
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:  # a key beach does not know: the program decides
            self.tentative()
            return
        if len(text) > PASTE:
            self.reset()
            return
        offset = end - len(data)
        for ch in text:
            offset += len(ch.encode())
            code = ord(ch)
            if code in _BACKSPACE:
                self._backspace(model, offset)
            elif code >= 0x20 and code != 0x7F and wcwidth(ch) == 1:
                self._insert(model, ch, offset)
            else:  # Enter, Tab, Ctrl-anything: the program decides what happens
                self.tentative()

    def _where(self, model: ScreenModel) -> tuple[int, int]:
        return self.cursor if self.cursor is not None else model.cursor

    def _shown_text(self, model: ScreenModel, row: int, col: int) -> tuple[str, Char]:
        guess = self.cells.get((row, col))
        if guess is not None:
            return guess.char, guess.attrs
        return model.text(row, col), model.char(row, col)

    def _end(self, model: ScreenModel, row: int) -> int:
        """One past the last non-blank cell of the row, guesses included."""
        end = model.line_end(row)
        for r, c in self.cells:
            if r == row and c >= end and self.cells[r, c].char != " ":
                end = c + 1
        return end

    def _plain_row(self, model: ScreenModel, row: int, col: int) -> int | None:
        """The row's end if a guess on it can be exact, else None."""
        if not model.plain or not model.narrow_from(row, col):
            return None
        end = self._end(model, row)
        return end if end < model.cols - 1 else None

    def _set(
        self, model: ScreenModel, row: int, col: int, char: str, attrs: Char, due: int, typed: bool
    ) -> None:
        old = self.cells.get((row, col))
        seen = old.seen if old is not None else model.text(row, col)
        self.cells[row, col] = Guess(char, attrs, due, self.epoch, seen, typed)

    def _move(self, row: int, col: int, due: int) -> None:
        self.cursor, self.cursor_due, self.cursor_epoch = (row, col), due, self.epoch

    def _insert(self, model: ScreenModel, ch: str, due: int) -> None:
        row, col = self._where(model)
        end = self._plain_row(model, row, col)
        if end is None or col >= model.cols - 2:
            self.tentative()
            return
        self.stats.keys += 1
        line = [self._shown_text(model, row, c) for c in range(col, max(end, col))]
        self._set(model, row, col, ch, model.cursor_attrs, due, True)
        for i, (text, attrs) in enumerate(line, start=col + 1):
            self._set(model, row, i, text, attrs, due, False)
        self._move(row, col + 1, due)

    def _backspace(self, model: ScreenModel, due: int) -> None:
        row, col = self._where(model)
        end = self._plain_row(model, row, col)
        if end is None or col == 0:
            self.tentative()
            return
        self.stats.keys += 1
        line = [self._shown_text(model, row, c) for c in range(col, max(end, col))]
        for i, (text, attrs) in enumerate(line, start=col - 1):
            self._set(model, row, i, text, attrs, due, False)
        last = max(end, col) - 1
        self._set(model, row, last, " ", model.blank, due, False)
        self._move(row, col - 1, due)

    def _arrow(self, model: ScreenModel, right: bool, due: int) -> None:
        row, col = self._where(model)
        end = self._plain_row(model, row, col)
        if end is None or (right and col >= end) or (not right and col == 0):
            self.tentative()
            return
        self.stats.keys += 1
        self._move(row, col + (1 if right else -1), due)

    # -- the host's answer ----------------------------------------------------------------------

    def judge(self, model: ScreenModel, offset: int) -> None:
        """The host's screen (the model) has the answer to input before `offset`."""
        due = sorted(
            (pos for pos, g in self.cells.items() if g.due <= offset),
            key=lambda pos: self.cells[pos].due,
        )
        for pos in due:
            guess = self.cells.get(pos)
            if guess is None:  # dropped with its epoch
                continue
            if model.text(*pos) == guess.char:
                self.stats.confirmed += 1
                self.confirmed = max(self.confirmed, guess.epoch)
                del self.cells[pos]
            elif not self._wrong(guess):
                return
        if self.cursor is not None and self.cursor_due <= offset:
            if model.cursor == self.cursor:
                self.confirmed = max(self.confirmed, self.cursor_epoch)
                self.cursor = None
            elif self.cursor_epoch <= self.confirmed:
                self.stats.wrong += 1
                self.stats.resets += 1
                self.reset()
            else:
                self._drop_epoch(self.cursor_epoch)

    def _wrong(self, guess: Guess) -> bool:
        """A guess the host's screen contradicts; False once every guess is gone."""
        if guess.epoch <= self.confirmed:  # it was shown (or could have been): start over
            if guess.shown:
                self.stats.wrong += 1
            self.stats.resets += 1
            self.reset()
            return False
        self._drop_epoch(guess.epoch)
        return True

    def _drop_epoch(self, epoch: int) -> None:
        """A tentative epoch was wrong: its guesses and every later one go, unseen."""
        for pos in [p for p, g in self.cells.items() if g.epoch >= epoch]:
            del self.cells[pos]
        if self.cursor is not None and self.cursor_epoch >= epoch:
            self.cursor = None
        self.epoch = max(self.epoch, epoch) + 1

    # -- what to draw ---------------------------------------------------------------------------

    def visible(self, model: ScreenModel) -> list[tuple[tuple[int, int], Guess]]:
        """Guesses to draw over the host's screen: of a confirmed epoch, where the host has not
        written since, and where it does not already show them."""
        out = []
        for pos, guess in self.cells.items():
            if guess.epoch > self.confirmed:
                continue
            now = model.text(*pos)
            if now != guess.seen or now == guess.char:
                continue
            out.append((pos, guess))
        return out

    def visible_cursor(self) -> tuple[int, int] | None:
        if self.cursor is not None and self.cursor_epoch <= self.confirmed:
            return self.cursor
        return None
