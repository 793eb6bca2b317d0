"""`beach serve`: the rendezvous server. It assigns session ids, introduces joiners to hosts
and relays opaque `signal` payloads between them. It never sees a secret or a terminal byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from .. import __version__
from ..errors import ProtocolError
from ..wire.ids import random_code
from ..wire.signaling import (
    E_BAD_MESSAGE,
    E_HOST_AWAY,
    E_NOT_ALLOWED,
    E_RATE_LIMITED,
    E_TOO_MANY,
    E_UNKNOWN_PEER,
    E_UNKNOWN_SESSION,
    MAX_MESSAGE_BYTES,
    parse_client_message,
    server_message,
)
from .client import SEND_TIMEOUT, Client, ParseBudget, ServerLimits
from .collector import Collector
from .edge import ClientAddress, ConnectionGate, EdgeLimits, GatedSite
from .metrics import Metrics
from .page import add_routes as add_page_routes
from .registry import Budget, RefusedJoins, Registry, Session, addr_key
from .remote import RemoteClient
from .tickets import ReclaimKey, ticket_digest
from .turn import IceConfig

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("beach.server")

SESSION_ID_LENGTH = 6
PEER_ID_LENGTH = 8
REFUSED_NOTICE_INTERVAL = 5.0  # seconds between two `joins_refused` to one host
REAP_INTERVAL = 5.0
SHUTDOWN_CONCURRENCY = 256  # closes in flight at once when the server stops
SHUTDOWN_CLOSE_SECONDS = 2.0  # for each client to answer the close
TIMER_ROUNDING_THRESHOLD = 24 * 3600.0  # seconds: in effect, aiohttp never rounds our timers

__all__ = ["Client", "ServerLimits", "Session", "SignalServer", "start_server"]


class SignalServer:
    def __init__(
        self,
        limits: ServerLimits | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        ice: IceConfig | None = None,
        redis_url: str | None = None,
        reclaim_key: ReclaimKey | None = None,
        edge: EdgeLimits | None = None,
        tune_gc: bool = False,
    ) -> None:
        self.limits = limits = limits or ServerLimits()
        # `beach serve` only: the embedded server shares the host's process and its collector.
        self.collector = Collector(self._live) if tune_gc else None
        # Signs reclaim tickets; a random one (the embedded server) dies with the process.
        self.reclaim_key = reclaim_key or ReclaimKey()
        self.cluster: Cluster | None = None
        # What a lost cluster raises, caught where the server talks to it (nothing without one).
        self._cluster_errors: tuple[type[BaseException], ...] = ()
        if redis_url:
            from . import cluster  # Redis: loaded only for --redis

            self.cluster = cluster.Cluster(
                redis_url, self._on_cluster_event, self._hosted_here, self.reclaim_key.fingerprint
            )
            self._cluster_errors = cluster.ERRORS
        self.ice = ice or IceConfig()
        self._static_ice = ice_servers or []
        self.registry = Registry()
        self.sessions = self.registry.sessions
        self.clients: set[Client] = set()
        per_session = limits.session_joins_per_minute or 6 * limits.join_attempts_per_minute
        self._joins_by_addr = Budget(limits.join_attempts_per_minute)
        self._joins_by_session = Budget(per_session)
        self._hosts_by_addr = Budget(limits.host_attempts_per_minute)
        self._reclaim_failures = Budget(limits.failed_reclaims_per_minute)
        self._refused = RefusedJoins(REFUSED_NOTICE_INTERVAL)
        # With a cluster, `registered` waits until Redis says where the session is: a joiner
        # at another instance could otherwise arrive first and hear "no such session".
        self._unclaimed: dict[Client, str] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._connected: Counter[str] = Counter()  # WebSockets per client address
        self.metrics = Metrics()
        self.edge = edge or EdgeLimits()
        self.addresses = ClientAddress(self.edge.trusted_proxies, self.edge.proxy_header)
        self.gate = ConnectionGate(self.edge, self.addresses, self.metrics)
        self._background: set[asyncio.Future[Any]] = set()

    def ice_servers(self, label: str) -> list[dict[str, Any]]:
        """ICE servers for one client: fixed ones, then STUN/TURN with fresh credentials."""
        return self._static_ice + self.ice.servers(label)

    # -- aiohttp wiring ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.handle_ws)
        app.router.add_get("/ws", self.handle_ws)
        app.router.add_get("/healthz", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        add_page_routes(app)  # the browser joiner's page at /j/
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        if self.cluster is not None:
            await self.cluster.start()
        self._reaper = asyncio.create_task(self._reap_loop())
        if self.collector is not None:
            self.collector.start()  # last: what start-up made is frozen with it

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self._reaper:
            self._reaper.cancel()
        if self.collector is not None:
            await self.collector.stop()
        await self._close_all(list(self.clients))
        if self.cluster is not None:
            await self.cluster.stop()

    async def _close_all(self, clients: list[Client]) -> None:
        """Say goodbye to every client at once (a bounded number of closes in flight), each
        bounded in time; whoever has not answered by then is cut."""
        slots = asyncio.Semaphore(SHUTDOWN_CONCURRENCY)

        async def close(client: Client) -> None:
            async with slots:
                await client.stop()  # its writer would race the close frame
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(SHUTDOWN_CLOSE_SECONDS):
                        await client.ws.close(
                            code=WSCloseCode.GOING_AWAY, message=b"server shutting down"
                        )
                client.abort()

        if clients:
            await asyncio.gather(*(close(c) for c in clients))

    async def handle_health(self, _request: web.Request) -> web.Response:
        peers = sum(len(s.peers) for s in self.sessions.values() if not s.mirror)
        body: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "sessions": sum(1 for s in self.sessions.values() if not s.mirror),
            "peers": peers,
        }
        status = 200
        if self.cluster is not None:
            reachable = await self.cluster.ping()
            body["redis"] = "ok" if reachable else "unreachable"
            if not reachable:
                body["status"], status = "degraded", 503
        return web.json_response(body, status=status)

    async def handle_metrics(self, _request: web.Request) -> web.Response:
        gauges = {
            "beach_sessions": ("Sessions known to this server.", len(self.sessions)),
            "beach_hosts_connected": (
                "Sessions whose host is connected.",
                sum(1 for s in self.sessions.values() if s.host is not None),
            ),
            "beach_peers": (
                "Joiners connected through this server.",
                sum(len(s.peers) for s in self.sessions.values()),
            ),
            "beach_connections": ("Open WebSocket connections.", len(self.clients)),
        }
        text = self.metrics.render(gauges)
        if self.collector is not None:
            text += "\n".join(self.collector.render()) + "\n"
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    def _live(self) -> int:
        """Connections and sessions held: what the collector expects frozen objects for."""
        return len(self.clients) + len(self.sessions)

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        # No permessage-deflate: handshake messages are small, and each deflate context costs
        # hundreds of KiB per connection.
        ws = web.WebSocketResponse(
            heartbeat=self.limits.heartbeat_seconds, max_msg_size=MAX_MESSAGE_BYTES, compress=False
        )
        try:
            upgradable = ws.can_prepare(request).ok
        except Exception:  # aiohttp chokes on some malformed upgrade headers: a client error
            return web.Response(status=400, text="bad WebSocket upgrade request\n")
        if not upgradable:
            return web.Response(text="beach signaling server: connect with a WebSocket\n")
        await ws.prepare(request)
        try:
            return await self._serve_ws(request, ws)
        finally:
            _untie(request)

    async def _serve_ws(
        self, request: web.Request, ws: web.WebSocketResponse
    ) -> web.StreamResponse:
        self.gate.upgraded(request.transport)
        addr = self.addresses.of(request)
        client = Client(ws, addr, request.transport, self.metrics, self.limits.messages_per_second)
        refusal = self._refusal(addr)
        if refusal is not None:
            client.error(E_TOO_MANY, refusal)
            client.close_after_flush()
            await client.stop_after(SEND_TIMEOUT)
            return ws
        self.clients.add(client)
        self._connected[addr] += 1
        client.send(
            server_message(
                "welcome", server=f"beach/{__version__}", ice_servers=self.ice_servers("anonymous")
            )
        )
        try:
            await self._read(client, ws)
        finally:
            self.clients.discard(client)
            self._connected[addr] -= 1
            if self._connected[addr] <= 0:
                del self._connected[addr]
            self._forget(client)
            await client.stop()
        return ws

    def _refusal(self, addr: str) -> str | None:
        """Why a new connection from `addr` is turned away, if it is."""
        if len(self.clients) >= self.limits.max_connections:
            return "the server is full; try again later"
        if self._connected[addr] >= self.limits.max_connections_per_address:
            return "too many connections from your address"
        return None

    async def _read(self, client: Client, ws: web.WebSocketResponse) -> None:
        """Handle what `client` sends until it goes away or floods."""
        frames = max(self.limits.frames_per_second, self.limits.messages_per_second)
        budget = ParseBudget(self.limits.relay_bytes_per_second, frames)
        flood = 10 * self.limits.messages_per_second
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            # Charged before parsing, so what a client makes the server parse is bounded by its
            # budget. Over it, the next message waits: nothing more is read from this client
            # meanwhile, TCP pushes back on the sender, and relayed frames arrive paced, never
            # dropped.
            wait = budget.charge(len(msg.data))
            if wait > 0:
                self.metrics.inc("beach_paced_messages_total")
                await asyncio.sleep(wait)
            if msg.type == WSMsgType.TEXT:
                await self._dispatch(client, msg.data)
            elif client.allow():
                client.error(E_BAD_MESSAGE, "binary messages are not part of the protocol")
            # Messages already buffered come without a pause: after a stall, a burst would be
            # routed into the target's outbox with its writer never getting a turn, and that
            # client dropped as if it did not read. Give writers a turn.
            await asyncio.sleep(0)
            if client.refused > flood:  # a flood, not a burst: hang up
                log.warning("closing %s: message flood", client.addr)
                break

    # -- message handling ----------------------------------------------------------------------

    async def _dispatch(self, client: Client, raw: str) -> None:
        try:
            msg = parse_client_message(raw)
        except ProtocolError as exc:
            if client.allow():
                client.error(E_BAD_MESSAGE, exc.message)
            else:  # counts towards a flood like any other message over the rate
                client.error(E_RATE_LIMITED, "too many messages; slow down")
            return
        # Relayed frames (terminal traffic) are paced by the byte budget in _read; every
        # other message also counts against the message rate, and a flood of them is cut.
        if msg["type"] != "relay" and not client.allow():
            client.error(E_RATE_LIMITED, "too many messages; slow down")
            return
        handler = getattr(self, f"_on_{msg['type']}")
        try:
            if self.cluster is not None and not await self._cluster_prepare(client, msg):
                return
            handler(client, msg)
            if self.cluster is not None:
                await self._cluster_after(client, msg)
        except self._cluster_errors as exc:
            log.warning("cluster: %s", exc)
            client.error(E_NOT_ALLOWED, "the server cannot reach its cluster right now")
        except Exception:  # the server survives any input; log and tell the client
            log.exception("error handling %s from %s", msg["type"], client.addr)
            with contextlib.suppress(Exception):
                client.error(E_BAD_MESSAGE, "the server could not process that message")

    def _on_host(self, client: Client, msg: dict[str, Any]) -> None:
        if client.session is not None:
            client.error(E_NOT_ALLOWED, "this connection already belongs to a session")
            return
        if self.cluster is None and not self._admit_host(client):
            return  # (with a cluster, _cluster_prepare admitted it before asking Redis)
        sid = msg.get("session")
        if sid is None:
            self._register(client)
        else:
            self._reclaim(client, sid, msg.get("reclaim") or "")

    def _admit_host(self, client: Client) -> bool:
        if self._hosts_by_addr.allow(addr_key(client.addr)):
            return True
        client.error(E_RATE_LIMITED, "too many host registrations from your address; wait a minute")
        return False

    def _register(self, client: Client) -> None:
        if self.registry.hosted_from(client.addr) >= self.limits.max_sessions_per_address:
            client.error(E_TOO_MANY, "too many sessions from your address")
            return
        sid = self._new_id(SESSION_ID_LENGTH, self.sessions)
        session = self.registry.open(sid, self.reclaim_key.issue(sid), client)
        log.info("session %s registered by %s", sid, client.addr)
        self._registered(client, session)

    def _reclaim(self, client: Client, sid: str, ticket: str) -> None:
        """A host coming back (a blip, a restarted server, another instance) with the ticket
        it was given. Only a ticket this server's key made for `sid` will do, and a live
        session takes only the very ticket it issued."""
        session = self.sessions.get(sid)
        # One HMAC and one comparison whether the id is live or free, and one answer for
        # every failure: a refusal tells nothing about which ids exist.
        genuine = self.reclaim_key.verify(sid, ticket)
        issued = ticket if session is None else "" if session.mirror else session.reclaim
        if not (secrets.compare_digest(issued.encode(), ticket.encode()) and genuine):
            self._reclaim_refused(client, sid)
            return
        old = session.host if session is not None else None
        moving_here = old is None or addr_key(old.addr) != addr_key(client.addr)
        if moving_here and (
            self.registry.hosted_from(client.addr) >= self.limits.max_sessions_per_address
        ):
            client.error(E_TOO_MANY, "too many sessions from your address")
            return
        if session is None:
            session = self.registry.open(sid, ticket)
            log.info("session %s re-created for a returning host (valid ticket)", sid)
        replaced = self.registry.attach_host(session, client)
        if replaced is not None:
            replaced.close_after_flush()
        log.info("session %s reclaimed by %s", sid, client.addr)
        self._registered(client, session)

    def _reclaim_refused(self, client: Client, sid: str) -> None:
        self.metrics.inc("beach_reclaims_refused_total")
        if not self._reclaim_failures.allow(addr_key(client.addr)):
            client.error(E_RATE_LIMITED, "too many failed reclaims from your address; wait")
        else:
            client.error(E_UNKNOWN_SESSION, f"session {sid} cannot be reclaimed")

    def _registered(self, client: Client, session: Session) -> None:
        text = server_message(
            "registered",
            session=session.id,
            reclaim=session.reclaim,
            ice_servers=self.ice_servers(session.id),
        )
        if self.cluster is None:
            client.send(text)
        else:
            self._unclaimed[client] = text  # sent by _cluster_after

    def _on_join(self, client: Client, msg: dict[str, Any]) -> None:
        if client.session is not None:
            self._join_refused(
                client, E_NOT_ALLOWED, "this connection already belongs to a session"
            )
            return
        session = self.sessions.get(msg["session"])
        # Each address spends its own budget first (bounding guesses), so that one address
        # cannot spend a whole session's budget and lock out the joiners with the token.
        if not self._joins_by_addr.allow(addr_key(client.addr)) or (
            session is not None and not self._joins_by_session.allow(session.id)
        ):
            self._join_refused(
                client,
                E_RATE_LIMITED,
                "too many join attempts; wait a minute and try again",
                session,
            )
            return
        if session is None:
            self._join_refused(client, E_UNKNOWN_SESSION, f"there is no session {msg['session']}")
            return
        if session.host is None:
            self._join_refused(
                client, E_HOST_AWAY, f"the host of session {session.id} is not connected"
            )
            return
        if len(session.peers) >= self.limits.max_peers_per_session:
            self._join_refused(client, E_TOO_MANY, "this session has too many joiners", session)
            return
        peer = self._new_id(PEER_ID_LENGTH, session.peers)
        self.registry.attach_peer(session, peer, client)
        ice = self.ice_servers(session.id)  # fresh TURN credentials for both ends
        self.metrics.inc("beach_joins_total")
        client.send(server_message("joined", session=session.id, peer=peer, ice_servers=ice))
        text = server_message("peer_joined", peer=peer, addr=client.addr[:64], ice_servers=ice)
        if isinstance(session.host, RemoteClient):  # the host is on another instance
            session.host.peer_joined(peer, client.addr[:64], text)
        else:
            session.host.send(text)

    def _join_refused(
        self, client: Client, code: str, message: str, session: Session | None = None
    ) -> None:
        self.metrics.inc("beach_join_failures_total", reason=code)
        client.error(code, message)
        if session is not None and session.host is not None:
            # Its host learns that someone is knocking (the count, at most every few seconds).
            self._tell_refused_joins(self._refused.add(session.id, session.host, code))

    @staticmethod
    def _tell_refused_joins(notices: list[tuple[Any, str, int]]) -> None:
        for host, code, count in notices:
            if isinstance(host, RemoteClient) or host.session is not None:
                host.send(server_message("joins_refused", code=code, count=count))

    def _on_signal(self, client: Client, msg: dict[str, Any]) -> None:
        target, sender = self._route(client, msg["to"])
        if target is not None and sender is not None:
            self.metrics.inc("beach_signals_total")
            target.send(server_message("signal", **{"from": sender}, data=msg["data"]))

    def _on_relay(self, client: Client, msg: dict[str, Any]) -> None:
        target, sender = self._route(client, msg["to"])
        if target is None or sender is None:
            return
        self.metrics.inc("beach_relayed_messages_total")
        self.metrics.inc("beach_relayed_bytes_total", len(msg["data"]))
        target.send(server_message("relay", **{"from": sender}, data=msg["data"]))

    def _route(self, client: Client, to: str) -> tuple[Client | None, str | None]:
        """Where a host's or joiner's message for `to` goes, and who it is from."""
        session = client.session
        if session is None:
            client.error(E_NOT_ALLOWED, "host or join a session before signaling")
            return None, None
        if client.peer_id is None:  # from the host, to one peer
            target, sender = session.peers.get(to), "host"
        else:  # from a joiner, only ever to its host
            target, sender = (session.host if to == "host" else None), client.peer_id
        if target is None:
            client.error(E_UNKNOWN_PEER, f"{to} is not connected")
        return target, sender

    def _on_drop(self, client: Client, msg: dict[str, Any]) -> None:
        session = client.session
        if session is None or client.peer_id is not None or session.host is not client:
            client.error(E_NOT_ALLOWED, "only the host may drop a peer")
            return
        peer = self.registry.detach_peer(session, msg["peer"])
        if peer is not None:
            peer.error("dropped", msg.get("reason") or "the host closed this join attempt")
            peer.close_after_flush()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _forget(self, client: Client) -> None:
        """`client`'s WebSocket is gone."""
        self._unclaimed.pop(client, None)
        session = client.session
        if session is None:
            return
        if client.peer_id is not None:
            peer_id = client.peer_id
            if self.registry.detach_peer(session, peer_id) is client and session.host:
                self._tell_peer_left(session, peer_id)
            return
        if session.host is client:
            # Kept for a grace period so the host can reclaim it after a blip.
            self._tell_host_left(self.registry.detach_host(session))
            log.info("session %s: host disconnected", session.id)
            if self.cluster is not None:
                self._spawn(self.cluster.release(session.id, self.limits.host_grace_seconds))

    def _tell_peer_left(self, session: Session, peer_id: str) -> None:
        text = server_message("peer_left", peer=peer_id)
        if isinstance(session.host, RemoteClient):
            session.host.peer_left(peer_id, text)
        else:
            session.host.send(text)

    @staticmethod
    def _tell_host_left(peers: list[Any], reason: str = "the host disconnected") -> None:
        for peer in peers:
            peer.send(server_message("host_left", reason=reason))
            peer.close_after_flush()

    # -- cluster (beach serve --redis) ----------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cluster_prepare(self, client: Client, msg: dict[str, Any]) -> bool:
        """Before `host` or `join` for a session this instance does not hold, learn where it
        lives from Redis. False if the message has been answered already."""
        assert self.cluster is not None
        kind, sid = msg["type"], msg.get("session")
        if kind not in ("host", "join") or client.session is not None:
            return True
        if kind == "host" and not self._admit_host(client):  # before any Redis round trip
            return False
        if sid is None:
            return True
        local = self.sessions.get(sid)
        if local is not None and not local.mirror and local.host is not None:
            return True  # held here, with its host
        found = await self.cluster.lookup(sid)
        if kind == "host":
            return self._cluster_host(client, sid, msg.get("reclaim") or "", local, found)
        if found is None or found[0] == self.cluster.inst:
            if local is not None and local.mirror:  # the session is gone from the cluster
                self._tell_host_left(self.registry.close(local), "the session ended")
            return True
        inst, _, alive = found
        if local is not None and (
            not local.mirror or not alive or getattr(local.host, "inst", None) != inst
        ):
            # Its host moved to another instance or died: what is kept here is stale.
            self._tell_host_left(self.registry.close(local), "the host moved")
            local = None
        if local is None:
            host = self._remote(inst, sid, "host") if alive else None
            self.registry.open(sid, "", host, mirror=True)
        return True

    def _cluster_host(
        self,
        client: Client,
        sid: str,
        ticket: str,
        local: Session | None,
        found: tuple[str, str, bool] | None,
    ) -> bool:
        """A host reclaiming `sid` here. Redis names the ticket the session was last held
        with; a host with that ticket moves here (the old instance lets go of it)."""
        assert self.cluster is not None
        if found is None:
            if local is not None and local.mirror:
                self._tell_host_left(self.registry.close(local))
            return True  # _reclaim verifies the ticket against the key alone
        inst, digest, alive = found
        genuine = self.reclaim_key.verify(sid, ticket)
        if not (secrets.compare_digest(digest, ticket_digest(ticket)) and genuine):
            self._reclaim_refused(client, sid)  # the same answer as for any failed reclaim
            return False
        if local is None or local.mirror:
            if local is not None:
                self._tell_host_left(self.registry.close(local), "the host moved")
            self.registry.open(sid, ticket)  # _reclaim attaches the host
        if inst != self.cluster.inst and alive:
            self.cluster.publish(inst, {"op": "close", "sid": sid, "to": "host"})
        return True

    async def _cluster_after(self, client: Client, msg: dict[str, Any]) -> None:
        assert self.cluster is not None
        if msg["type"] == "host":
            text = self._unclaimed.pop(client, None)
            session = client.session
            if text is None or session is None or session.host is not client:
                return
            try:
                await self.cluster.claim(session.id, ticket_digest(session.reclaim))
            except BaseException:
                if session.host is client:  # not registered after all: it may try again
                    self.registry.detach_host(session)
                raise
            client.send(text)
        elif msg["type"] == "join":
            session = self.sessions.get(msg["session"])
            if session is not None and session.mirror and not session.peers:
                self.registry.close(session)  # the join failed: no mirror to keep

    def _hosted_here(self) -> list[tuple[str, str]]:
        return [
            (s.id, ticket_digest(s.reclaim))
            for s in self.sessions.values()
            if isinstance(s.host, Client)
        ]

    def _on_cluster_event(self, event: dict[str, Any]) -> None:
        """An event published to this instance by another one."""
        op, sid = event.get("op"), event.get("sid")
        session = self.sessions.get(sid) if isinstance(sid, str) else None
        if session is None:
            if op == "peer_joined":  # a joiner elsewhere was routed to a session not here
                self._bounce_remote_peer(event)
            return
        to = event.get("to")
        target = session.host if to == "host" else session.peers.get(str(to))
        if op == "deliver" and isinstance(target, Client):
            target.send(str(event.get("text", "")))
        elif op == "close" and isinstance(target, Client):
            if to == "host":
                # The host moved to another instance, which holds the session from now on.
                self._tell_host_left(self.registry.close(session), "the host moved")
                log.info("session %s: host moved to another instance", session.id)
            else:
                self.registry.detach_peer(session, str(to))  # a mirror goes with it
            target.close_after_flush()
        elif op == "peer_joined":
            if not isinstance(session.host, Client) or session.mirror:
                self._bounce_remote_peer(event)
                return
            peer = str(event.get("peer"))
            remote = self._remote(str(event.get("inst")), session.id, peer, str(event.get("addr")))
            self.registry.attach_peer(session, peer, remote)
            session.host.send(str(event.get("text", "")))
        elif op == "peer_left" and isinstance(session.host, Client):
            if self.registry.detach_peer(session, str(event.get("peer"))) is not None:
                session.host.send(str(event.get("text", "")))

    def _remote(self, inst: str, sid: str, target: str, addr: str = "") -> RemoteClient:
        assert self.cluster is not None  # only a cluster has clients on other instances
        return RemoteClient(self.cluster, inst, sid, target, addr)

    def _bounce_remote_peer(self, event: dict[str, Any]) -> None:
        """A joiner on another instance was introduced to a host that is not here (any more):
        tell it so at once rather than leave it waiting."""
        inst, sid, peer = event.get("inst"), event.get("sid"), event.get("peer")
        if isinstance(inst, str) and isinstance(sid, str) and isinstance(peer, str):
            remote = self._remote(inst, sid, peer)
            remote.send(server_message("host_left", reason="the host is no longer here"))
            remote.close_after_flush()

    async def _reap_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            self._tell_refused_joins(self._refused.due())
            ticks += 1
            if ticks % int(REAP_INTERVAL):
                continue
            self._expire_sessions()
            for budget in (
                self._joins_by_addr,
                self._joins_by_session,
                self._hosts_by_addr,
                self._reclaim_failures,
            ):
                budget.prune()
            if self.cluster is not None:
                try:
                    await self._reap_remote()
                except self._cluster_errors as exc:
                    log.warning("cluster: %s", exc)

    def _expire_sessions(self) -> None:
        now = time.monotonic()
        grace = self.limits.host_grace_seconds
        for session in list(self.sessions.values()):
            if session.mirror and not session.peers:
                self.registry.close(session)  # never kept without a joiner
            elif session.host is None and (
                session.host_lost_at is None or now - session.host_lost_at > grace
            ):
                self._tell_host_left(self.registry.close(session))
                log.info("session %s expired", session.id)

    async def _reap_remote(self) -> None:
        """Drop what refers to instances that died without saying so: mirrors of their hosts,
        and their joiners in sessions held here."""
        assert self.cluster is not None
        insts: set[str] = set()
        for session in self.sessions.values():
            if isinstance(session.host, RemoteClient):
                insts.add(session.host.inst)
            insts.update(p.inst for p in session.peers.values() if isinstance(p, RemoteClient))
        dead = {inst for inst in insts if not await self.cluster.alive(inst)}
        if not dead:
            return
        for session in list(self.sessions.values()):
            if isinstance(session.host, RemoteClient) and session.host.inst in dead:
                self._tell_host_left(self.registry.close(session))
                continue
            for peer_id, peer in list(session.peers.items()):
                if isinstance(peer, RemoteClient) and peer.inst in dead:
                    self.registry.detach_peer(session, peer_id)
                    if isinstance(session.host, Client):
                        session.host.send(server_message("peer_left", peer=peer_id))

    @staticmethod
    def _new_id(length: int, taken: dict[str, Any]) -> str:
        while True:
            candidate = random_code(length)
            if candidate not in taken:
                return candidate


def _untie(request: web.Request) -> None:
    """Break the cycle aiohttp (3.14) leaves behind a WebSocket with a heartbeat: its protocol
    keeps the response's `_on_data_received` (which only postpones the next ping), the response
    keeps the request, the request the protocol. Unbroken, every ended connection waits for a
    full collection to be freed, and for ever once gc.freeze() has moved it (collector.py)."""
    protocol = request.protocol
    if getattr(protocol, "_data_received_cb", None) is not None:
        protocol._data_received_cb = None


async def start_server(
    host: str,
    port: int,
    server: SignalServer | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner (to clean up) and the port actually bound."""
    server = server or SignalServer()
    runner = web.AppRunner(
        server.app(),
        access_log=None,
        handle_signals=False,
        # Between plain HTTP requests on one connection; the gate bounds the first one.
        keepalive_timeout=server.edge.header_timeout,
        # aiohttp rounds timers longer than this up to a whole second, so every heartbeat ping
        # due within a second went out in one burst (500 a second at 10,000 connections, a
        # ~15 ms stall each second). Unrounded, each connection pings on its own schedule.
        timeout_ceil_threshold=TIMER_ROUNDING_THRESHOLD,
    )
    await runner.setup()
    site = GatedSite(runner, host, port, server.gate, ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.bound
