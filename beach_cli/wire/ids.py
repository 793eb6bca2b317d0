"""Ids and secrets as people type them: session ids (chosen by the server) and token secrets
(chosen by the host) use the same alphabet, so one generator serves both."""

from __future__ import annotations

import secrets

# No 0/1/i/l/o: nothing a person could misread when typing a token from a screen.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def random_code(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
