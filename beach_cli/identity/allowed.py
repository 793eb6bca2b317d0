"""The host's side: the SSH keys it admits, and the check of a joiner's proof.

Keys come as OpenSSH `authorized_keys` lines (a file, or an account's published keys, see
published.py); asyncssh parses them and checks signatures.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from ..errors import KeysUnavailable
from ..text import printable
from .proof import (
    KEY_TYPES,
    MAX_ALLOWED,
    SIG_ALGORITHMS,
    ProofRefused,
    fingerprint,
    hint,
    signature_algorithm,
)
from .proof import signed_data as _signed

log = logging.getLogger("beach.identity")

MAX_FILE = 1024 * 1024  # bytes of an authorized_keys file
# A key type's signature algorithms: an RSA key may sign only with SHA-2.
_SIGNS_WITH = {
    "ssh-rsa": {b"rsa-sha2-256", b"rsa-sha2-512"},
}


@dataclass(frozen=True)
class AllowedKey:
    blob: bytes  # the public key in SSH wire form
    label: str  # its comment, or where it was published (github:NAME); printable
    key: asyncssh.SSHKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    @property
    def name(self) -> str:
        """How notices name whoever proved this key."""
        return f"{self.label} {self.fingerprint}" if self.label else self.fingerprint


def _split_options(line: str) -> tuple[str, str]:
    """An authorized_keys line's options (before the key type, commas and quotes) and the rest."""
    first = line.split(None, 1)[0]
    if first.startswith(("ssh-", "ecdsa-", "sk-")) and "=" not in first:
        return "", line
    quoted = escaped = False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c in " \t" and not quoted:
            return line[:i], line[i:].strip()
    return line, ""


def parse_authorized_keys(text: str, source: str, label: str | None = None) -> list[AllowedKey]:
    """The usable keys of OpenSSH authorized_keys lines; what it skips is logged with its line.
    `label` names every key (else each key's comment)."""
    keys: list[AllowedKey] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {n}"
        options, rest = _split_options(line)
        if "cert-authority" in options.lower():
            log.warning("%s: a certificate authority; beach admits keys only, skipped", where)
            continue
        try:
            key = asyncssh.import_public_key(rest)
        except (asyncssh.KeyImportError, ValueError, binascii.Error, TypeError):
            log.warning("%s: not a public key beach can read, skipped", where)
            continue
        kind = key.get_algorithm()
        if kind not in KEY_TYPES:
            log.warning("%s: %s keys are not supported, skipped", where, printable(kind, 40))
            continue
        if options:
            log.warning(
                "%s: options (%s) are ignored: beach admits the key, with no restriction",
                where,
                printable(options, 60),
            )
        comment = label if label is not None else (key.get_comment() or "")
        keys.append(AllowedKey(key.public_data, printable(comment, 64), key))
    return keys


def read_authorized_keys(path: Path) -> list[AllowedKey]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise KeysUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE:
        raise KeysUnavailable(f"{path} is larger than {MAX_FILE // 1024} KiB")
    keys = parse_authorized_keys(data.decode("utf-8", "replace"), str(path))
    if not keys:
        raise KeysUnavailable(f"{path} lists no key beach can use ({', '.join(sorted(KEY_TYPES))})")
    return keys


class AllowedKeys:
    """The keys a host admits; `check` turns a joiner's proof into the key it proved."""

    def __init__(self, keys: list[AllowedKey]) -> None:
        self._by_blob: dict[bytes, AllowedKey] = {}
        for key in keys:
            self._by_blob.setdefault(key.blob, key)
        if not self._by_blob:
            raise KeysUnavailable("no SSH key to admit joiners with")
        if len(self._by_blob) > MAX_ALLOWED:
            raise KeysUnavailable(f"{len(self._by_blob)} keys: beach admits at most {MAX_ALLOWED}")

    def __len__(self) -> int:
        return len(self._by_blob)

    def hints(self, binding: bytes) -> list[str]:
        return [hint(binding, blob) for blob in self._by_blob]

    def check(self, binding: bytes, key_b64: str, sig_b64: str) -> AllowedKey:
        """The allowed key that signed this handshake's binding; ProofRefused if none did."""
        try:
            blob = base64.b64decode(key_b64, validate=True)
            sig = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProofRefused("a malformed key proof") from exc
        allowed = self._by_blob.get(blob)
        if allowed is None:
            raise ProofRefused(f"a key that is not allowed ({fingerprint(blob)})")
        algorithm = signature_algorithm(sig)
        usable = _SIGNS_WITH.get(
            allowed.key.get_algorithm(), {allowed.key.get_algorithm().encode()}
        )
        if algorithm not in SIG_ALGORITHMS or algorithm not in usable:
            what = printable(algorithm.decode("ascii", "replace"), 40) or "none"
            raise ProofRefused(f"a signature algorithm beach does not accept ({what})")
        try:
            good = allowed.key.verify(_signed(binding), sig)
        except (ValueError, TypeError, asyncssh.Error):
            good = False
        if not good:
            raise ProofRefused(f"a signature that does not match {allowed.fingerprint}")
        return allowed
