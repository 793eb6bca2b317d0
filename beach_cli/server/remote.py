"""A host or joiner connected to another instance of a cluster (`beach serve --redis`), as the
registry holds it: what is sent to it is published to its instance. Apart from the Redis client
(cluster.py), so that a server without --redis never loads Redis."""

from __future__ import annotations

from typing import Any, Protocol

from ..wire.signaling import server_message


class Publisher(Protocol):
    """Delivers events to another instance (cluster.Cluster)."""

    inst: str  # this instance

    def publish(self, inst: str, event: dict[str, Any]) -> None: ...


class RemoteClient:
    """A host or joiner connected to another instance; `send` publishes to it."""

    def __init__(
        self, cluster: Publisher, inst: str, sid: str, target: str, addr: str = ""
    ) -> None:
        self.cluster = cluster
        self.inst = inst
        self.sid = sid
        self.target = target  # "host" or a peer id
        self.addr = addr

    def send(self, text: str) -> None:
        self.cluster.publish(
            self.inst, {"op": "deliver", "sid": self.sid, "to": self.target, "text": text}
        )

    def error(self, code: str, message: str) -> None:
        self.send(server_message("error", code=code, message=message))

    def close_after_flush(self) -> None:
        self.cluster.publish(self.inst, {"op": "close", "sid": self.sid, "to": self.target})

    # A remote host keeps the registry of its session: it hears of its peers coming and going.

    def peer_joined(self, peer: str, addr: str, text: str) -> None:
        """A joiner here was given `peer` in this host's session; `text` is its `peer_joined`."""
        self.cluster.publish(
            self.inst,
            {
                "op": "peer_joined",
                "sid": self.sid,
                "peer": peer,
                "inst": self.cluster.inst,
                "addr": addr,
                "text": text,
            },
        )

    def peer_left(self, peer: str, text: str) -> None:
        self.cluster.publish(
            self.inst, {"op": "peer_left", "sid": self.sid, "peer": peer, "text": text}
        )
