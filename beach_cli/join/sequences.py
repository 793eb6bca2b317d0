"""What the joiner's filters (wrap.py, viewport.py) share about escape sequences in the stream:
a parameter's value, clamped, and the piece of a sequence that a frame's end cut off.

A program may write a control sequence of any length, and the host sends its output in frames
that can cut one anywhere. The cut piece is carried to the next frame, found however far back
it starts (a 5000-digit parameter is still one sequence), and kept short: digits past
PARAM_MAX's and parameters past the first few change nothing a terminal does, and carrying them
would let one endless sequence hold memory and make every frame rescan it.
"""

from __future__ import annotations

import re

# Parameters above this are clamped before parsing: no screen is that large (the wire allows
# 10,000 columns), and int() of thousands of digits is slow or raises. A count is then clamped
# to the screen again before any loop, so a hostile `CSI 999999999 I` costs nothing.
PARAM_MAX = 65535
_PARAM_DIGITS = len(str(PARAM_MAX))
# A terminal acts on this many parameters at most (xterm keeps 30); the rest are dropped.
_PARAMS_KEPT = 32
_INTERMEDIATES_KEPT = 4

# ESC alone, ESC and intermediates, or a CSI without its final byte: all at the very end.
_CUT_ESCAPE = re.compile(rb"\x1b(?:\[(?P<params>[\x30-\x3f]*)(?P<inter>[\x20-\x2f]*)|[\x20-\x2f]*)")
_CUT_UTF8 = re.compile(rb"[\xc2-\xf4][\x80-\xbf]{0,2}\Z")
_LONG_NUMBER = re.compile(rb"\d{%d,}" % (_PARAM_DIGITS + 1))


def param(digits: bytes, default: int = 0) -> int:
    """One numeric parameter of a control sequence, clamped to PARAM_MAX (never a giant int)."""
    digits = digits.lstrip(b"0")
    if not digits:
        return default
    if len(digits) > _PARAM_DIGITS:
        return PARAM_MAX
    return min(int(digits), PARAM_MAX)


def _shortened(params: bytes, inter: bytes) -> bytes:
    params = _LONG_NUMBER.sub(lambda m: b"%d" % param(m.group()), params)
    fields = params.split(b";", _PARAMS_KEPT)
    return b"\x1b[" + b";".join(fields[:_PARAMS_KEPT]) + inter[:_INTERMEDIATES_KEPT]


def split_cut(data: bytes) -> tuple[bytes, bytes]:
    """`data` without the escape sequence or UTF-8 character its end cuts off, and that piece
    to carry (b"" if none): at most a few hundred bytes, whatever was cut."""
    esc = data.rfind(b"\x1b")
    if esc >= 0:
        m = _CUT_ESCAPE.fullmatch(data, esc)
        if m is not None:
            if m.group("params") is None:
                return data[:esc], data[esc : esc + 1 + _INTERMEDIATES_KEPT]
            return data[:esc], _shortened(m.group("params"), m.group("inter"))
    m = _CUT_UTF8.search(data, max(len(data) - 3, 0))
    if m is not None:
        lead = data[m.start()]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if m.end() - m.start() < need:
            return data[: m.start()], data[m.start() :]
    return data, b""
