"""A joiner's model of the shared screen: the cells, the cursor and the modes that predictive
echo (join/predict.py) guesses against and is judged by.

pyte interprets the output (about 0.5 MB/s here), so the model is fed only while prediction
is wanted and output is interactive; beach never feeds it bulk output (join/echo.py decides).
What the model says is used only where it can be exact: a line of plain single-width text,
the main screen, no insert or origin mode, the default character set, the cursor short of
the last column. Anything else, and there is no guess.
"""

from __future__ import annotations

import re
from typing import Any

import pyte
from pyte import graphics, modes
from pyte.screens import Char
from wcwidth import wcwidth

# The alternate screen (xterm 1049, 1047, 47): pyte keeps private modes shifted by 5 bits.
_ALT_SCREENS = {1049 << 5, 1047 << 5, 47 << 5}
_NOT_PLAIN = {modes.IRM, modes.DECOM} | _ALT_SCREENS
MAX_SGR = 16  # SGR sequences since the last reset that the model can say again
# What selects a character set (pyte ignores designations in UTF-8 mode; terminals do not):
# G0 designated, shift out to G1 and back in, a full reset.
_CHARSET = re.compile(rb"\x1b\((.)|\x0e|\x0f|\x1bc", re.DOTALL)

_FG = {name: code for code, name in (graphics.FG_ANSI | graphics.FG_AIXTERM).items()}
_BG = {name: code for code, name in (graphics.BG_ANSI | graphics.BG_AIXTERM).items()}


class _Screen(pyte.Screen):
    """pyte's screen, keeping the SGR sequences in effect as they came (pyte models fewer
    attributes than a terminal has: faint, conceal, underline colours...), so that the
    terminal's own attributes can be set back exactly after beach draws over it."""

    def __init__(self, columns: int, lines: int) -> None:
        self.sgr: list[tuple[int, ...]] = []
        self.sgr_lost = False  # more than MAX_SGR since the last reset
        # pyte has one buffer: leaving the alternate screen, a terminal shows the main screen
        # again (and its cursor) while pyte keeps the full-screen program's cells.
        self.left_alt = False
        super().__init__(columns, lines)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and {m << 5 for m in modes} & _ALT_SCREENS & self.mode:
            self.left_alt = True
        super().reset_mode(*modes, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.sgr = []
        self.sgr_lost = False

    def select_graphic_rendition(self, *attrs: int, **kwargs: object) -> None:
        if kwargs.get("private"):  # ESC [ > 4 ; 2 m (xterm's key modes): not attributes
            return
        if not attrs or attrs[0] == 0:
            self.sgr.clear()
            self.sgr_lost = False
        if attrs and attrs != (0,):
            if len(self.sgr) >= MAX_SGR:
                self.sgr_lost = True
            else:
                self.sgr.append(tuple(attrs[:32]))
        super().select_graphic_rendition(*attrs)


class ScreenModel:
    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self._screen = _Screen(cols, rows)
        self._stream = pyte.ByteStream(self._screen)
        self.fed = 0  # bytes, for the feeding budget
        self._g0_special = False  # G0 is not ASCII (ESC ( 0: line drawing...)
        self._shifted = False  # SO: G1 is in use

    def feed(self, data: bytes) -> None:
        self.fed += len(data)
        if b"\x1b(" in data or b"\x0e" in data or b"\x0f" in data or b"\x1bc" in data:
            for m in _CHARSET.finditer(data):
                seq = m.group()
                if seq == b"\x0e":
                    self._shifted = True
                elif seq == b"\x0f":
                    self._shifted = False
                elif seq == b"\x1bc":
                    self._g0_special = self._shifted = False
                else:
                    self._g0_special = m.group(1) != b"B"
        self._stream.feed(data)

    # -- where a guess can be exact -------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """The model no longer follows the terminal (it left the alternate screen)."""
        return self._screen.left_alt

    @property
    def at_rest(self) -> bool:
        """The output so far ends between sequences and characters: beach may write its own."""
        stream = self._stream
        return bool(stream._taking_plain_text) and not stream.utf8_decoder.getstate()[0]

    @property
    def plain(self) -> bool:
        """Main screen, replace mode, absolute cursor addressing, the default character set,
        attributes the model can restore, the cursor on the screen and short of its last
        column."""
        s = self._screen
        return (
            not (s.mode & _NOT_PLAIN)
            and s.charset == 0
            and s.g0_charset is pyte.charsets.LAT1_MAP
            and not self._g0_special
            and not self._shifted
            and not s.sgr_lost
            and 0 <= s.cursor.y < self.rows
            and s.cursor.x < self.cols - 1
        )

    @property
    def cursor(self) -> tuple[int, int]:
        return self._screen.cursor.y, self._screen.cursor.x

    @property
    def cursor_attrs(self) -> Char:
        return self._screen.cursor.attrs

    @property
    def blank(self) -> Char:
        return self._screen.default_char

    def char(self, row: int, col: int) -> Char:
        return self._screen.buffer[row][col]

    def text(self, row: int, col: int) -> str:
        return self._screen.buffer[row][col].data or " "

    def line_end(self, row: int) -> int:
        """One past the last cell of the row that is not a plain blank."""
        line = self._screen.buffer[row]
        default = self._screen.default_char
        return max((c + 1 for c, ch in line.items() if ch != default), default=0)

    def narrow_from(self, row: int, col: int) -> bool:
        """Every cell from `col` to the row's end holds one single-width character (or none)."""
        line = self._screen.buffer[row]
        for c, ch in line.items():
            if c >= col and ch.data and wcwidth(ch.data) != 1:
                return False
        return True

    # -- saying it back to the terminal -----------------------------------------------------------

    def sgr_now(self) -> bytes:
        """The attributes in effect, as the output set them."""
        return b"\x1b[0m" + b"".join(
            b"\x1b[%sm" % ";".join(map(str, attrs)).encode() for attrs in self._screen.sgr
        )

    def lines(self) -> list[str]:
        return list(self._screen.display)


def sgr_of(char: Char, underline: bool = False) -> bytes:
    """SGR for a cell as the model has it (256 colours come back as their RGB)."""
    params = ["0"]
    for flag, code in (
        (char.bold, "1"),
        (char.italics, "3"),
        (char.underscore or underline, "4"),
        (char.blink, "5"),
        (char.reverse, "7"),
        (char.strikethrough, "9"),
    ):
        if flag:
            params.append(code)
    for color, names, base in ((char.fg, _FG, "38"), (char.bg, _BG, "48")):
        if color == "default":
            continue
        if color in names:
            params.append(str(names[color]))
        elif len(color) == 6:
            try:
                r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
            except ValueError:
                continue
            params.append(f"{base};2;{r};{g};{b}")
    return b"\x1b[" + ";".join(params).encode() + b"m"
