"""How `beach ssh` can fail before the session starts, each with an exit code of its own."""

from __future__ import annotations

from ..errors import BeachError


class SshFailed(BeachError):
    """ssh itself failed (its exit 255): no connection, no login, a bad option."""

    exit_code = 15


class NoRemoteBeach(BeachError):
    """The remote has no beach where we looked."""

    exit_code = 16


class RemoteHostFailed(BeachError):
    """The remote `beach host` ended before giving its join information, or gave none usable."""

    exit_code = 17
