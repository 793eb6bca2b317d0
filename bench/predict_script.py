"""The scripted typing session of the predict section: a few command lines as a person types
them (a typo fixed with backspace, an edit made with the arrow keys, Enter between lines), and
what a line editor's screen shows after each key, so a screen can be checked key by key.

Pure data and arithmetic: no processes here (bench/predict_typing.py types it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BACKSPACE, LEFT, RIGHT, ENTER = b"\x7f", b"\x1b[D", b"\x1b[C", b"\r"
PACE = (0.090, 0.130)  # s between keys, uniform: 8-10 keys a second, a person's pace
SEED = 16

# Each line as typed: text, and {"<": backspace, "[": left, "]": right}. Every command's
# output is the same on every run (the LAN row compares two runs' bytes).
LINES = (
    "echo hellp<o world",  # a typo seen at once
    "printf '%s\\n' one thrr<ee[[[[[[ two]",  # a typo, an edit mid-line, right again
    "ls -d /usr/bni<<in",  # two keys back
    "cd /tmp && pwd",  # no mistake
    "echo $((6 * 8))[[<7]]",  # back over the brackets, fix, forward again
)
QUICK_LINES = LINES[1:2]  # backspace and both arrows, in one line
_KEYS = {"<": BACKSPACE, "[": LEFT, "]": RIGHT}


@dataclass(frozen=True)
class Key:
    """One keystroke and the line editor's state once it is answered: the line's text after
    the prompt and the cursor's column in it. `glyph` is False for Enter (no state to see)."""

    data: bytes
    text: str
    cursor: int
    glyph: bool = True


def keys_of(line: str) -> list[Key]:
    """The keystrokes of one scripted line, Enter last, each with its expected state."""
    text, cursor, out = "", 0, []
    for ch in line:
        data = _KEYS.get(ch, ch.encode())
        if data == BACKSPACE:
            if cursor:
                text, cursor = text[: cursor - 1] + text[cursor:], cursor - 1
        elif data == LEFT:
            cursor = max(cursor - 1, 0)
        elif data == RIGHT:
            cursor = min(cursor + 1, len(text))
        else:
            text, cursor = text[:cursor] + ch + text[cursor:], cursor + 1
        out.append(Key(data, text, cursor))
    out.append(Key(ENTER, text, cursor, glyph=False))
    return out


def typed(line: str) -> str:
    """The command the line ends as."""
    return keys_of(line)[-1].text


def pauses(count: int, seed: int = SEED) -> list[float]:
    """Seconds before each of `count` keys: the same every run, so methods type alike."""
    rng = random.Random(seed)
    return [rng.uniform(*PACE) for _ in range(count)]
