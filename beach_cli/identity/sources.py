"""Where a host's allowed keys come from: `--authorized-keys FILE` and `--github-user NAME`,
gathered once at start (a failure ends the host before it registers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from .allowed import AllowedKey, AllowedKeys, read_authorized_keys
from .published import published_keys

log = logging.getLogger("beach.identity")


async def gather_allowed(files: Sequence[Path], accounts: Sequence[str], base: str) -> AllowedKeys:
    keys: list[AllowedKey] = []
    for path in files:
        keys += await asyncio.to_thread(read_authorized_keys, path)
    fetched = await asyncio.gather(*(published_keys(name, base) for name in accounts))
    for name, found in zip(accounts, fetched, strict=True):
        log.info("%d keys published by %s", len(found), name)
        keys += found
    return AllowedKeys(keys)
