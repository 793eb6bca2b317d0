"""The joiner's side: prove it holds one of the keys the host allows, through the ssh-agent it
already runs ($SSH_AUTH_SOCK) or a key file (`beach join -i FILE`). The private key never
leaves the agent; only a signature of this handshake's binding goes to the host, sealed."""

from __future__ import annotations

import asyncio
import base64
import getpass
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from ..errors import BeachError, KeyRefused
from ..text import printable
from .proof import KEY_TYPES, fingerprint, hint, signed_data

log = logging.getLogger("beach.identity")

AGENT_TIMEOUT = 25.0  # an agent may ask its user to confirm (ssh-add -c) before it signs
RSA_SIGNATURE = b"rsa-sha2-512"
PASSPHRASE_TRIES = 3


@dataclass
class Identity:
    """What `-i FILE` gave: a private key, or a public one naming which agent key to use."""

    path: Path
    private: asyncssh.SSHKey | None = None
    public_blob: bytes | None = None


def load_identity(path: Path) -> Identity:
    """Read `-i FILE` before any network wait: a passphrase is asked for here, on the terminal,
    never while the host waits. A `.pub` file (or a public key) picks a key in the agent."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BeachError(f"cannot read {path}: {exc.strerror or exc}") from exc
    passphrase: str | None = None
    for attempt in range(PASSPHRASE_TRIES + 1):
        try:
            key = asyncssh.import_private_key(data, passphrase)
            break
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            # asyncssh: "Passphrase must be specified" (KeyImportError) for an encrypted key
            # without one, KeyEncryptionError for a wrong one.
            encrypted = (
                isinstance(exc, asyncssh.KeyEncryptionError) or "passphrase" in str(exc).lower()
            )
            if not encrypted:
                return _public_identity(path, data)
            if attempt == PASSPHRASE_TRIES:
                raise BeachError(f"wrong passphrase for {path}") from exc
            if not sys.stdin.isatty():
                raise BeachError(
                    f"{path} is encrypted and there is no terminal to ask its passphrase: "
                    f"add it to your ssh-agent (ssh-add {path})"
                ) from exc
            if passphrase is not None:
                print("wrong passphrase", file=sys.stderr)
            passphrase = getpass.getpass(f"passphrase for {path}: ")
        except (ValueError, TypeError):
            return _public_identity(path, data)
    if key.get_algorithm() not in KEY_TYPES:
        raise BeachError(f"{path} is a {printable(key.get_algorithm(), 40)} key: not supported")
    return Identity(path, private=key)


def _public_identity(path: Path, data: bytes) -> Identity:
    """Not a private key: a public one, naming the agent's key to use (as ssh's -i does)."""
    try:
        public = asyncssh.import_public_key(data)
    except (asyncssh.KeyImportError, ValueError, TypeError) as exc:
        raise BeachError(f"{path} is not an SSH key beach can read") from exc
    return Identity(path, public_blob=public.public_data)


async def prove(binding: bytes, hints: list[str], identity: Identity | None) -> dict[str, Any]:
    """The sealed proof for the host ({"t": "proof", ...}); KeyRefused (exit 13) with what to
    do if no key here is one the host allows."""
    wanted = set(hints)
    data = signed_data(binding)
    if identity is not None and identity.private is not None:
        key = identity.private
        if hint(binding, key.public_data) not in wanted:
            raise KeyRefused(
                f"this session admits only certain SSH keys, and {identity.path} "
                f"({fingerprint(key.public_data)}) is not one of them"
            )
        algorithm = RSA_SIGNATURE if key.get_algorithm() == "ssh-rsa" else key.sig_algorithms[0]
        sig = await asyncio.to_thread(key.sign, data, algorithm)
        return _proof(key.public_data, sig)
    return await _agent_proof(binding, wanted, data, identity)


def _proof(blob: bytes, sig: bytes) -> dict[str, Any]:
    log.info("proving key %s", fingerprint(blob))
    return {
        "t": "proof",
        "key": base64.b64encode(blob).decode(),
        "sig": base64.b64encode(sig).decode(),
    }


async def _agent_proof(
    binding: bytes, wanted: set[str], data: bytes, identity: Identity | None
) -> dict[str, Any]:
    if not os.environ.get("SSH_AUTH_SOCK"):
        raise KeyRefused(
            "this session admits only certain SSH keys: run an ssh-agent holding yours "
            "(ssh-add), or give beach join -i FILE"
        )
    try:
        async with asyncio.timeout(AGENT_TIMEOUT):
            async with asyncssh.connect_agent() as agent:
                keys: list[Any] = [k for k in await agent.get_keys() if not k.has_cert]
                if identity is not None:
                    keys = [k for k in keys if k.public_data == identity.public_blob]
                    if not keys:
                        raise KeyRefused(f"the key of {identity.path} is not in your ssh-agent")
                for key in keys:
                    if hint(binding, key.public_data) in wanted:
                        if key.get_algorithm() == "ssh-rsa":
                            key.set_sig_algorithm(RSA_SIGNATURE)
                        return _proof(key.public_data, await key.sign_async(data))
    except TimeoutError as exc:
        raise KeyRefused(f"your ssh-agent did not sign within {AGENT_TIMEOUT:.0f} s") from exc
    except (OSError, asyncssh.Error, ValueError) as exc:
        why = printable(str(exc), 120) or type(exc).__name__
        raise KeyRefused(f"could not use your ssh-agent: {why}") from exc
    n = len(keys)
    raise KeyRefused(
        f"this session admits only certain SSH keys, and none of the {n} key"
        f"{'' if n == 1 else 's'} in your ssh-agent is one of them (add yours with ssh-add, "
        "or give beach join -i FILE)"
    )
