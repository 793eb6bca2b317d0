"""What a joiner signs to prove it holds an allowed SSH key, and how the host says which keys
it allows without naming them.

The signature covers the key exchange's binding (`KeyExchange.proof_binding`: this session,
this peer, this role and this SPAKE2 transcript), so it proves a key to this very handshake
and no other. It is made in OpenSSH's SSHSIG form with a namespace of beach's own: an ssh-agent
signs it like any blob, yet it can never pass for an SSH login's or a git commit's signature,
and `ssh-keygen -Y verify -n beach-join` checks it (tests/test_identity.py does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from ..errors import BeachError

NAMESPACE = b"beach-join"
HASH = b"sha512"
# The signature algorithms accepted: no SHA-1 (plain `ssh-rsa` signatures), no DSA.
SIG_ALGORITHMS = frozenset(
    {
        b"ssh-ed25519",
        b"ecdsa-sha2-nistp256",
        b"ecdsa-sha2-nistp384",
        b"ecdsa-sha2-nistp521",
        b"rsa-sha2-256",
        b"rsa-sha2-512",
    }
)
# The key types a host may allow (an RSA key signs with rsa-sha2-*).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    }
)
MAX_ALLOWED = 512  # keys one host allows: their hints travel in one sealed message
HINT_BYTES = 12
MAX_BLOB = 4096  # characters of base64 for a public key or a signature (RSA-16384 fits)


class ProofRefused(BeachError):
    """The joiner's proof does not show an allowed key (the host's reason, for its log)."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def signed_data(binding: bytes) -> bytes:
    """The bytes the joiner's key signs: SSHSIG's (OpenSSH PROTOCOL.sshsig) for `binding`."""
    digest = hashlib.sha512(binding).digest()
    return b"SSHSIG" + _string(NAMESPACE) + _string(b"") + _string(HASH) + _string(digest)


def hint(binding: bytes, public_blob: bytes) -> str:
    """A key's name for this handshake only: the joiner finds which of its keys are allowed,
    and learns nothing of the others, nor can anyone tell two sessions' lists apart."""
    mac = hmac.new(binding, b"beach/1|key-hint|" + public_blob, hashlib.sha256).digest()
    return base64.b64encode(mac[:HINT_BYTES]).decode()


def signature_algorithm(signature: bytes) -> bytes:
    """The algorithm an SSH signature blob names (its first string), b"" if malformed."""
    if len(signature) < 4:
        return b""
    (n,) = struct.unpack(">I", signature[:4])
    return signature[4 : 4 + n] if 4 + n <= len(signature) else b""


def fingerprint(public_blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -l` shows it."""
    digest = base64.b64encode(hashlib.sha256(public_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
