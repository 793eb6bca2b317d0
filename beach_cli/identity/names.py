"""Names the host's options give for published keys, checked before anything is fetched."""

from __future__ import annotations

import re

from ..errors import KeysUnavailable
from ..text import printable

DEFAULT_KEYS_URL = "https://github.com"
# GitHub's rule for account names: letters, digits and single inner hyphens, at most 39.
ACCOUNT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def check_account(name: str) -> str:
    if not ACCOUNT.fullmatch(name):
        raise KeysUnavailable(f"{printable(name, 60)!r} is not a GitHub account name")
    return name


def check_base(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise KeysUnavailable(f"--keys-url must be an http(s) URL, not {printable(url, 80)!r}")
    return url.rstrip("/")
