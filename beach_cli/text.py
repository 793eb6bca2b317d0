"""Text from elsewhere, made safe to show in a terminal.

Anything the server or an unauthenticated peer sends (error messages, addresses, labels) and
anything shown in a title must never carry a control sequence: an ESC or a C1 control in it
could set the clipboard (OSC 52), retitle the window or draw a fake prompt.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi overrides and isolates, zero-width joiners): nothing a label needs.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")


def printable(text: str, limit: int = 200) -> str:
    """`text` with every control and format character replaced by '?', cut to `limit`."""
    text = _UNSAFE.sub("?", text[: limit * 2])
    if any(unicodedata.category(c) == "Cf" for c in text):
        text = "".join("?" if unicodedata.category(c) == "Cf" else c for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
