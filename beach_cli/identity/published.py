"""Keys an account publishes (`--github-user NAME`): OpenSSH public keys, one per line, at
BASE/NAME.keys. BASE is configurable (`--keys-url`), so tests and GitHub Enterprise users
point it elsewhere."""

from __future__ import annotations

import aiohttp

from ..errors import KeysUnavailable
from ..text import printable
from .allowed import AllowedKey, parse_authorized_keys
from .names import check_account, check_base

FETCH_TIMEOUT = 15.0
MAX_BYTES = 256 * 1024


async def published_keys(name: str, base: str, timeout: float = FETCH_TIMEOUT) -> list[AllowedKey]:
    """NAME's published keys, labelled github:NAME; KeysUnavailable says why there are none."""
    url = f"{check_base(base)}/{check_account(name)}.keys"
    try:
        limits = aiohttp.ClientTimeout(total=timeout)
        # trust_env: a CI runner's proxy settings (HTTPS_PROXY) apply, as for curl.
        async with aiohttp.ClientSession(timeout=limits, trust_env=True) as http:
            async with http.get(url, max_redirects=3) as answer:
                if answer.status == 404:
                    raise KeysUnavailable(f"no account {name!r} at {base} ({url}: not found)")
                if answer.status != 200:
                    raise KeysUnavailable(f"fetching {name}'s keys: {url} answered {answer.status}")
                body = b""
                while len(body) <= MAX_BYTES:  # read() gives what has come, up to n
                    chunk = await answer.content.read(MAX_BYTES + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        why = printable(str(exc), 160) or type(exc).__name__
        raise KeysUnavailable(f"could not fetch {name}'s keys from {url}: {why}") from exc
    if len(body) > MAX_BYTES:
        raise KeysUnavailable(f"{url} sent more than {MAX_BYTES // 1024} KiB")
    keys = parse_authorized_keys(body.decode("utf-8", "replace"), url, label=f"github:{name}")
    if not keys:
        raise KeysUnavailable(f"{name} has published no SSH key beach can use ({url})")
    return keys
