"""Wrap lines at the PTY's width on a joiner's wider terminal.

A program writing to an 80-column PTY relies on the terminal to wrap at column 80; a joiner's
120-column terminal would not, and every long line (and every cursor movement computed from
wrapped lines) would land elsewhere. `WrapAt` follows the cursor's column through the stream,
just enough to insert the wraps an 80-column terminal would make and to clamp movements to its
width. Rows need no such care: the joiner's scroll region is set to the PTY's rows.

Only joiners whose window is wider than the PTY pay for this; it touches runs of text and
escape sequences, not single bytes, except for non-ASCII text.
"""

from __future__ import annotations

import re
import unicodedata

from .sequences import PARAM_MAX, param, split_cut

_TOKEN = re.compile(
    rb"(?P<text>[\x20-\x7e]+)"
    rb"|(?P<csi>\x1b\[(?P<params>[\x30-\x3f]*)[\x20-\x2f]*(?P<final>[\x40-\x7e]))"
    # A string runs to BEL or ST; one cut short by ESC or by the frame's end stops there.
    rb"|(?P<string>\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?)"
    rb"|(?P<esc>\x1b[\x20-\x2f]*[\x30-\x7e])"
    # Runs of controls that move the cursor only to the line's start or down (NUL, BEL, CR, LF,
    # ...): one token per run, so a flood of them costs little. BS and TAB come one at a time.
    rb"|(?P<ctls>[\x00-\x07\x0a-\x1a\x1c-\x1f\x7f]+)"
    rb"|(?P<ctl>[\x08\x09])"
    rb"|(?P<utf8>[\xc2-\xf4][\x80-\xbf]*)"
    rb"|(?P<other>[\x80-\xff])"
)
_TAB = 8
_MOVES = re.compile(rb"[\n\x0b\x0c\r]")
_CLEARS_WRAP = frozenset(bytes([c]) for c in b"ABCDEFGHIJKLMPXZadef`@r")
# Where a string (OSC, DCS, ...) that a frame's end left open ends: BEL, or ESC (the start of
# ST, or of a sequence that aborts the string).
_STRING_END = re.compile(rb"[\x07\x1b]")


def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class WrapAt:
    def __init__(self, cols: int, rows: int = PARAM_MAX) -> None:
        self.cols = cols
        self.rows = rows
        self._last: tuple[bytes, int] | None = None  # the last character printed, its width
        self.col = 0  # 0-based; == cols means "wrap pending" (the cursor sits past the edge)
        self.autowrap = True
        self._saved: tuple[int, bool] | None = None
        self._carry = b""  # a sequence the last frame cut off (see sequences.py)
        self._in_string = False  # the last frame ended inside a string: it goes on unread

    def _restored(self) -> bytes:
        """After a cursor restore: a restored cursor never has a wrap pending."""
        if self._saved is None:  # nothing saved: the cursor goes home
            self.col = 0
            return b""
        self.col, self.autowrap = self._saved  # DECSC keeps the autowrap mode too
        return self._cha() if self.col >= self.cols else b""

    def _cha(self) -> bytes:
        """Put the joiner's cursor where the PTY's is while a wrap is pending."""
        self.col = self.cols - 1
        return b"\x1b[%dG" % self.cols

    def _wrap(self, out: bytearray) -> None:
        """The next character does not fit on this line of the PTY's terminal."""
        if self.autowrap:
            out += b"\r\n"
            self.col = 0
        else:  # without autowrap it overwrites the last column
            out += self._cha()

    def _print_run(self, out: bytearray, text: bytes) -> None:
        """A run of single-width characters (by position: no copying of what is left)."""
        start, end = 0, len(text)
        while start < end:
            if self.col >= self.cols:
                self._wrap(out)
            room = self.cols - self.col
            if not self.autowrap and end - start > room:
                # The rest would overwrite the last cell: only the run's last character stays.
                out += text[start : start + room - 1] + text[end - 1 : end]
                start = end
                self.col = self.cols
            else:
                piece = text[start : start + room]
                out += piece
                start += len(piece)
                self.col += len(piece)
            self._last = (text[start - 1 : start], 1)
            if not self.autowrap and self.col >= self.cols:
                out += self._cha()  # the PTY's cursor stays on the last column

    def _print_char(self, out: bytearray, char: bytes, width: int) -> None:
        if self.autowrap and self.col + width > self.cols:
            self._wrap(out)  # a wide character at the last column wraps first
        elif self.col >= self.cols:  # no autowrap: it overwrites the last cells
            self.col = self.cols - width
            out += b"\x1b[%dG" % (self.col + 1)
        out += char
        self._last = (char, width)
        self.col = min(self.col + width, self.cols)
        if not self.autowrap and self.col >= self.cols:
            out += self._cha()

    def _repeat(self, n: int) -> bytes:
        """REP (`CSI n b`): the last character n more times, wrapped at the PTY's edge. One
        character and one shorter REP per line, so the cost follows lines, not n."""
        out = bytearray()
        if self._last is None:
            return b""  # nothing to repeat: the PTY's terminal repeats nothing either
        char, width = self._last
        while n > 0:
            if self.col + width > self.cols:  # not on this line: wrap, or overwrite the edge
                self._print_char(out, char, width)
                n -= 1
                if not self.autowrap:
                    break  # the rest overwrite the same cells with the same character
                continue
            k = min((self.cols - self.col) // width, n)
            out += char + (b"\x1b[%db" % (k - 1) if k > 1 else b"")
            self.col += k * width
            n -= k
            if not self.autowrap and self.col >= self.cols:
                out += self._cha()
                break
        return bytes(out)

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        if self._in_string:  # (never with a carry: a string is written out as it comes)
            end = _STRING_END.search(data)
            if end is None:
                return data
            stop = end.end() if data[end.start()] == 0x07 else end.start()
            out += data[:stop]
            data, self._in_string = data[stop:], False
        if self._carry:
            data, self._carry = self._carry + data, b""
        data, self._carry = split_cut(data)
        for m in _TOKEN.finditer(data):
            kind, tok = m.lastgroup, m.group()
            if kind == "text":
                self._print_run(out, tok)
            elif kind == "utf8":
                w = sum(char_width(c) for c in tok.decode("utf-8", errors="replace"))
                if w == 0:
                    out += tok  # combining marks join the previous character
                else:
                    self._print_char(out, tok, w)
            elif kind == "other":
                self._print_char(out, tok, 1)
            elif kind == "csi":
                out += self._csi(tok, m.group("params"), m.group("final"))
            elif kind == "esc":
                out += self._esc(tok)
            elif kind == "ctls":
                out += self._ctls(tok)
            elif kind == "ctl":
                out += self._ctl(tok)
            else:  # OSC, DCS and other strings: no cursor movement
                out += tok
                if m.end() == len(data) and not tok.endswith((b"\x07", b"\x1b\\")):
                    self._string_goes_on(out)
        return bytes(out)

    def _string_goes_on(self, out: bytearray) -> None:
        """The frame ended inside a string. A carried ESC ends it (ST, or a new sequence); any
        other carry (a cut UTF-8 character) is part of it: written out, as the rest will be."""
        if not self._carry.startswith(b"\x1b"):
            out += self._carry
            self._carry, self._in_string = b"", True

    def _ctls(self, tok: bytes) -> bytes:
        """A run of controls: a line feed (LF, VT, FF) clears a pending wrap, CR goes home."""
        prefix = b""
        if self.col >= self.cols:
            moves = _MOVES.search(tok)
            if moves is not None and tok[moves.start()] != 0x0D:
                prefix = self._cha()
        if b"\r" in tok:
            self.col = 0
        return prefix + tok

    def _ctl(self, tok: bytes) -> bytes:
        """BS or TAB (the only controls that come one at a time): each clears a pending wrap."""
        prefix = self._cha() if self.col >= self.cols else b""
        if tok == b"\x08":
            self.col = max(self.col - 1, 0)
            return prefix + tok
        stop = (self.col // _TAB + 1) * _TAB
        if stop >= self.cols:
            self.col = self.cols - 1
            return prefix + b"\x1b[%dG" % self.cols
        self.col = stop
        return prefix + tok

    def _csi(self, tok: bytes, params: bytes, final: bytes) -> bytes:
        # Cursor movements and erasures clear a pending wrap; colours and modes keep it.
        prefix = self._cha() if self.col >= self.cols and final in _CLEARS_WRAP else b""
        if params.startswith(b"?"):
            return prefix + tok + self._private_modes(params[1:].split(b";"), final)
        if not params.replace(b";", b"").isdigit() and params:
            return prefix + tok
        nums = [param(p) for p in params.split(b";")] if params else []
        return prefix + self._move(tok, final, nums)

    def _private_modes(self, modes: list[bytes], f: bytes) -> bytes:
        """DECSET/DECRST of autowrap (7) and of the alternate screen (1049), which saves and
        restores the cursor; what to write after the sequence."""
        if b"7" in modes and f in (b"h", b"l"):
            self.autowrap = f == b"h"
        if b"1049" in modes:
            if f != b"h":
                return self._restored()
            self._saved = (self.col, self.autowrap)
        return b""

    def _move(self, tok: bytes, f: bytes, nums: list[int]) -> bytes:
        """A control sequence with numeric parameters: follow the cursor, and clamp what would
        take it past the PTY's edges. What to write instead of `tok`."""

        def arg(i: int, default: int = 1) -> int:
            return nums[i] if len(nums) > i and nums[i] else default

        if f in (b"G", b"`"):
            col = min(arg(0), self.cols)
            self.col = col - 1
            return b"\x1b[%d%s" % (col, f)
        if f in (b"H", b"f"):
            col = min(arg(1), self.cols)
            self.col = col - 1
            return b"\x1b[%d;%d%s" % (min(arg(0), self.rows), col, f)
        if f in (b"C", b"a"):  # CUF, HPR: forward, never past the PTY's edge
            if self.col + arg(0) >= self.cols:
                self.col = self.cols - 1
                return b"\x1b[%dG" % self.cols
            self.col += arg(0)
        elif f == b"D":
            self.col = max(self.col - arg(0), 0)
        elif f in (b"E", b"F", b"r", b"L", b"M"):
            self.col = 0
        elif f == b"I":  # n tab stops forward, stopping at the PTY's last column
            n = min(arg(0), self.cols)
            self.col = min((self.col // _TAB + n) * _TAB, self.cols - 1)
            return b"\x1b[%dG" % (self.col + 1)
        elif f == b"Z":  # n tab stops back, stopping at the first column
            n = min(arg(0), self.cols)
            self.col = max(((self.col - 1) // _TAB - (n - 1)) * _TAB, 0) if self.col else 0
            return b"\x1b[%dG" % (self.col + 1)
        elif f == b"b":
            return self._repeat(min(arg(0), self.cols * self.rows))
        elif f == b"@":
            # Inserted blanks push cells past the PTY's edge, where the PTY's terminal drops
            # them: drop them here too, or a later delete would pull them back into view.
            return tok + b"\x1b[%dG\x1b[K\x1b[%dG" % (self.cols + 1, self.col + 1)
        elif f == b"s":
            self._saved = (self.col, self.autowrap)
        elif f == b"u":
            return tok + self._restored()
        return tok

    def _esc(self, tok: bytes) -> bytes:
        code = tok[1:]
        if code == b"7":
            self._saved = (self.col, self.autowrap)
            return tok
        if code == b"8":
            return tok + self._restored()
        if code == b"c":
            self.col, self.autowrap, self._saved, self._last = 0, True, None, None
            return tok
        prefix = self._cha() if self.col >= self.cols and code in (b"D", b"M", b"E") else b""
        if code == b"E":
            self.col = 0
        return prefix + tok
