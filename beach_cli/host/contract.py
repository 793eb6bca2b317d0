"""What the host session and one joiner may use of each other, and nothing more.

The session owns its joiners (host/joiner.py) and calls their small public surface; a joiner
sees the session only as a `JoinerHost`, and the session sees a joiner, in the calls it gets
from one, as a `PeerInfo`. Neither imports the other's module for these types, so there is no
import cycle between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..resume import ResumeTable
from .guesses import GuessGate
from .options import HostOptions

if TYPE_CHECKING:
    from ..identity.allowed import AllowedKeys


class PeerInfo(Protocol):
    """One joiner as the host names it in notices and questions."""

    @property
    def id(self) -> str: ...  # the server's name for it
    @property
    def addr(self) -> str: ...  # the server's word, made printable
    @property
    def label(self) -> str: ...
    @property
    def role(self) -> str: ...  # "?" until its first message names one
    @property
    def state(self) -> str: ...  # "handshake", "connecting", "live" or "closed"
    @property
    def key(self) -> str | None: ...  # the SSH key it proved, when keys are asked
    @property
    def relayed(self) -> bool: ...  # its frames go through the server
    @property
    def was_live(self) -> bool: ...  # it got as far as sharing the screen
    @property
    def hung_up(self) -> bool: ...  # it left by hanging up, not by going silent


class JoinerHost(Protocol):
    """What one joiner needs of the host session."""

    @property
    def opts(self) -> HostOptions: ...
    @property
    def session_id(self) -> str: ...
    @property
    def allowed_keys(self) -> AllowedKeys | None: ...  # --authorized-keys/--github-user
    @property
    def accepting(self) -> bool: ...  # False once the guess limit stopped new joiners
    @property
    def guesses(self) -> Mapping[str, GuessGate]: ...  # by role
    @property
    def resumes(self) -> ResumeTable: ...

    def secret(self, role: str) -> str: ...

    # The server, for this joiner's handshake and relayed frames.
    async def signal(self, peer_id: str, data: dict[str, Any]) -> None: ...
    async def relay(self, peer_id: str, text: str) -> None: ...
    async def drop(self, peer_id: str, reason: str) -> None: ...

    # The host's say, and its news.
    def guess_wait(self, peer: PeerInfo, seconds: float) -> None: ...
    def key_refused(self, peer: PeerInfo, why: str) -> None: ...
    async def approve(self, peer: PeerInfo) -> bool: ...
    def peer_live(self, peer: PeerInfo) -> None: ...
    def peer_gone(self, peer: PeerInfo) -> None: ...
    def notify(self, text: str) -> None: ...  # a short notice for the person hosting

    # The shared terminal.
    def shared_size(self) -> tuple[int, int]: ...
    def snapshot(self, clear_scrollback: bool = True, recent: int | None = None) -> bytes: ...
    def keystrokes(self, data: bytes, writer: str) -> None: ...
    # Predictive echo (the "echo" feature): the PTY's output so far read and handed out; the
    # PTY reading a password; how many writes others (the host, other joiners) made to it.
    def settle_output(self) -> None: ...
    def secret_input(self) -> bool: ...
    def writes_by_others(self, writer: str) -> int: ...
    def sizes_changed(self) -> None: ...
