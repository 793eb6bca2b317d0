"""The server's registry of sessions: the one place where a client becomes a session's host or
one of its peers and stops being one, whatever the path (a message, a closed WebSocket, an
event from another cluster instance, expiry). A mirror (a session held by another instance,
kept for joiners connected here) goes with its last peer.

Also the per-key budgets (token buckets) that bound registering and joining.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..bucket import TokenBucket
from .remote import RemoteClient


def addr_key(addr: str) -> str:
    """What per-address limits count by: an IPv4 address, or an IPv6 /64 (one subscriber's
    share: counting single IPv6 addresses would give anyone 2^64 budgets)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class Budget:
    """Per key, `per_minute` events a minute with bursts of as many: a token bucket each, kept
    only while it is not full."""

    def __init__(self, per_minute: float) -> None:
        self.size = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str) -> bool:
        """Spend one event for `key`, if any is left."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self.size)
        return bucket.take()

    def prune(self) -> None:
        for key in [k for k, b in self._buckets.items() if b.full]:
            del self._buckets[key]


class RefusedJoins:
    """Joins of each session that the server turned away, counted until its host is told
    (`joins_refused`), at most once every `interval` seconds per session."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: dict[str, tuple[Any, Counter[str]]] = {}  # sid -> (host, counts)
        self._told: dict[str, float] = {}  # sid -> when its host was last told

    def add(self, sid: str, host: Any, code: str) -> list[tuple[Any, str, int]]:
        """Count one refusal; returns what to tell now if this session's host is due."""
        _, counts = self._pending.get(sid, (host, Counter()))
        counts[code] += 1
        self._pending[sid] = (host, counts)
        now = time.monotonic()
        return self._take(sid, now) if self._is_due(sid, now) else []

    def due(self) -> list[tuple[Any, str, int]]:
        """(host, code, count) for every session due now (called once a second)."""
        now = time.monotonic()
        out: list[tuple[Any, str, int]] = []
        for sid in [s for s in self._pending if self._is_due(s, now)]:
            out += self._take(sid, now)
        for sid in [s for s, t in self._told.items() if now - t >= self.interval]:
            if sid not in self._pending:
                del self._told[sid]
        return out

    def _is_due(self, sid: str, now: float) -> bool:
        told = self._told.get(sid)
        return told is None or now - told >= self.interval

    def _take(self, sid: str, now: float) -> list[tuple[Any, str, int]]:
        host, counts = self._pending.pop(sid)
        self._told[sid] = now
        return [(host, code, count) for code, count in counts.items()]


@dataclass(eq=False)
class Session:
    id: str
    reclaim: str  # the ticket its host was given (tickets.py); "" for a mirror
    host: Any  # a Client, a cluster.RemoteClient (host on another instance), or None
    peers: dict[str, Any] = field(default_factory=dict)
    host_lost_at: float | None = None
    mirror: bool = False  # a session held by another instance, for joiners connected here


def _local(client: Any) -> bool:
    return client is not None and not isinstance(client, RemoteClient)


class Registry:
    """Sessions by id, and how many live host connections each client address holds."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._hosted: Counter[str] = Counter()

    def hosted_from(self, addr: str) -> int:
        return self._hosted[addr_key(addr)]

    def attach_host(self, session: Session, host: Any) -> Any | None:
        """`host` now hosts `session`; returns the host connection it replaced, detached."""
        old = session.host
        if old is host:
            return None
        if old is not None:
            self._unhost(old)
        session.host, session.host_lost_at = host, None
        if _local(host):
            host.session = session
            self._hosted[addr_key(host.addr)] += 1
        return old

    def detach_host(self, session: Session) -> list[Any]:
        """The host connection is gone: the session stays for its grace period, without
        peers. Returns the peers, detached, for the caller to tell."""
        if session.host is not None:
            self._unhost(session.host)
        session.host, session.host_lost_at = None, time.monotonic()
        peers = list(session.peers.values())
        for peer in peers:
            self._unpeer(session, peer)
        session.peers.clear()
        if session.mirror:
            self._discard(session)
        return peers

    def attach_peer(self, session: Session, peer_id: str, client: Any) -> None:
        session.peers[peer_id] = client
        if _local(client):
            client.session, client.peer_id = session, peer_id

    def detach_peer(self, session: Session, peer_id: str) -> Any | None:
        """Remove one peer, by any path; returns it if it was there."""
        client = session.peers.pop(peer_id, None)
        if client is not None:
            self._unpeer(session, client)
        if session.mirror and not session.peers:
            self._discard(session)
        return client

    def open(self, sid: str, reclaim: str, host: Any = None, *, mirror: bool = False) -> Session:
        """A new session; one opened without a host expires after the grace period unless a
        host attaches."""
        session = Session(sid, reclaim, None, mirror=mirror)
        if host is None:
            session.host_lost_at = time.monotonic()
        self.sessions[sid] = session
        if host is not None:
            self.attach_host(session, host)
        return session

    def close(self, session: Session) -> list[Any]:
        """Forget `session` (expired, moved to another instance, or a mirror of a host that is
        gone); returns its peers, detached, for the caller to tell."""
        peers = self.detach_host(session)
        self._discard(session)
        return peers

    def _discard(self, session: Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def _unhost(self, host: Any) -> None:
        if not _local(host):
            return
        if host.session is not None and host.session.host is host:
            host.session = None
        key = addr_key(host.addr)
        self._hosted[key] -= 1
        if self._hosted[key] <= 0:
            del self._hosted[key]

    @staticmethod
    def _unpeer(session: Session, client: Any) -> None:
        if _local(client) and client.session is session:
            client.session, client.peer_id = None, None
