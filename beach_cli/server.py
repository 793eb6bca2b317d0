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
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from . import __version__
from .cluster import Cluster, ClusterUnavailable, RemoteClient
from .connection import SEND_TIMEOUT, Budget, Client, RateLimiter, ServerLimits
from .edge import ClientAddress, ConnectionGate, EdgeLimits, GatedSite
from .errors import ProtocolError
from .ice import IceConfig
from .keys import ALPHABET
from .metrics import Metrics
from .protocol import (
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

log = logging.getLogger("beach.server")

SESSION_ID_LENGTH = 6
PEER_ID_LENGTH = 8
SHUTDOWN_CONCURRENCY = 256  # closes in flight at once when the server stops
SHUTDOWN_CLOSE_SECONDS = 2.0  # for each client to answer the close


@dataclass
class Session:
    id: str
    reclaim: str
    host: Any  # a Client, a cluster.RemoteClient (host on another instance), or None
    peers: dict[str, Any] = field(default_factory=dict)
    host_lost_at: float | None = None
    join_times: list[float] = field(default_factory=list)
    mirror: bool = False  # a session held by another instance, for joiners connected here


class SignalServer:
    def __init__(
        self,
        limits: ServerLimits | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        ice: IceConfig | None = None,
        redis_url: str | None = None,
        edge: EdgeLimits | None = None,
    ) -> None:
        self.limits = limits or ServerLimits()
        self.cluster = (
            Cluster(redis_url, self._on_cluster_event, self._hosted_here) if redis_url else None
        )
        self.ice = ice or IceConfig()
        self._static_ice = ice_servers or []
        self.sessions: dict[str, Session] = {}
        self.clients: set[Client] = set()
        self._by_addr = RateLimiter(self.limits.join_attempts_per_minute)
        self._by_session = RateLimiter(self.limits.join_attempts_per_minute)
        self._reaper: asyncio.Task[None] | None = None
        self._hosted: Counter[str] = Counter()  # live host connections per client address
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
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        if self.cluster is not None:
            await self.cluster.start()
        self._reaper = asyncio.create_task(self._reap_loop())

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self._reaper:
            self._reaper.cancel()
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
        return web.Response(
            text=self.metrics.render(gauges), content_type="text/plain", charset="utf-8"
        )

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
        self.gate.upgraded(request.transport)
        addr = self.addresses.of(request)
        client = Client(ws, addr, request.transport, self.metrics)
        refusal = None
        if len(self.clients) >= self.limits.max_connections:
            refusal = "the server is full; try again later"
        elif self._connected[addr] >= self.limits.max_connections_per_address:
            refusal = "too many connections from your address"
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
        frames = max(self.limits.frames_per_second, self.limits.messages_per_second)
        budget = Budget(self.limits.relay_bytes_per_second, frames)
        flood = 10 * self.limits.messages_per_second
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                # Charged before parsing, so what a client makes the server parse is bounded
                # by its budget. Over it, the next message waits: nothing more is read from
                # this client meanwhile, TCP pushes back on the sender, and relayed frames
                # arrive paced, never dropped.
                wait = budget.charge(len(msg.data))
                if wait > 0:
                    self.metrics.inc("beach_paced_messages_total")
                    await asyncio.sleep(wait)
                if msg.type == WSMsgType.TEXT:
                    await self._dispatch(client, msg.data)
                elif client.allow(self.limits.messages_per_second):
                    client.error(E_BAD_MESSAGE, "binary messages are not part of the protocol")
                # Messages already buffered come without a pause: after a stall, a burst would
                # be routed into the target's outbox with its writer never getting a turn, and
                # that client dropped as if it did not read. Give writers a turn.
                await asyncio.sleep(0)
                if client.refused > flood:  # a flood, not a burst: hang up
                    log.warning("closing %s: message flood", client.addr)
                    break
        finally:
            self.clients.discard(client)
            self._connected[addr] -= 1
            if self._connected[addr] <= 0:
                del self._connected[addr]
            self._forget(client)
            await client.stop()
        return ws

    # -- message handling ----------------------------------------------------------------------

    async def _dispatch(self, client: Client, raw: str) -> None:
        try:
            msg = parse_client_message(raw)
        except ProtocolError as exc:
            if client.allow(self.limits.messages_per_second):
                client.error(E_BAD_MESSAGE, exc.message)
            else:  # counts towards a flood like any other message over the rate
                client.error(E_RATE_LIMITED, "too many messages; slow down")
            return
        # Relayed frames (terminal traffic) are paced by the byte budget in handle_ws; every
        # other message also counts against the message rate, and a flood of them is cut.
        if msg["type"] != "relay" and not client.allow(self.limits.messages_per_second):
            client.error(E_RATE_LIMITED, "too many messages; slow down")
            return
        handler = getattr(self, f"_on_{msg['type']}")
        try:
            if self.cluster is not None and not await self._cluster_prepare(client, msg):
                return
            handler(client, msg)
            if self.cluster is not None:
                await self._cluster_after(client, msg)
        except ClusterUnavailable as exc:
            client.error(E_NOT_ALLOWED, f"the server cannot reach its cluster: {exc}")
        except (RedisError, OSError, TimeoutError) as exc:
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
        sid, reclaim = msg.get("session"), msg.get("reclaim")
        if sid is not None and sid not in self.sessions and reclaim and len(reclaim) >= 16:
            # A host coming back to a server that restarted (or another instance): it keeps its
            # session id, so the tokens it printed stay valid. Squatting an id gains nothing:
            # joiners' key exchanges would fail without the host's secrets.
            self.sessions[sid] = Session(sid, reclaim, None)
            log.info("session %s adopted from a returning host", sid)
        if sid is not None:
            session = self.sessions.get(sid)
            if (
                session is None
                or not reclaim
                or not secrets.compare_digest(session.reclaim, reclaim)
            ):
                client.error(E_UNKNOWN_SESSION, f"session {sid} cannot be reclaimed")
                return
            if session.host is not None:
                old = session.host
                self._release(old)
                old.session = None
                old.close_after_flush()
            session.host, session.host_lost_at = client, None
            log.info("session %s reclaimed by %s", sid, client.addr)
        else:
            if self._hosted[client.addr] >= self.limits.max_sessions_per_address:
                client.error(E_TOO_MANY, "too many sessions from your address")
                return
            sid = self._new_id(SESSION_ID_LENGTH, self.sessions)
            session = Session(sid, secrets.token_urlsafe(24), client)
            self.sessions[sid] = session
            log.info("session %s registered by %s", sid, client.addr)
        client.session = session
        self._hosted[client.addr] += 1
        client.send(
            server_message(
                "registered",
                session=sid,
                reclaim=session.reclaim,
                ice_servers=self.ice_servers(sid),
            )
        )

    def _on_join(self, client: Client, msg: dict[str, Any]) -> None:
        if client.session is not None:
            self._join_refused(
                client, E_NOT_ALLOWED, "this connection already belongs to a session"
            )
            return
        if not self._by_addr.allow(client.addr) or not self._by_session.allow(msg["session"]):
            self._join_refused(
                client, E_RATE_LIMITED, "too many join attempts; wait a minute and try again"
            )
            return
        session = self.sessions.get(msg["session"])
        if session is None:
            self._join_refused(client, E_UNKNOWN_SESSION, f"there is no session {msg['session']}")
            return
        if session.host is None:
            self._join_refused(
                client, E_HOST_AWAY, f"the host of session {session.id} is not connected"
            )
            return
        if len(session.peers) >= self.limits.max_peers_per_session:
            self._join_refused(client, E_TOO_MANY, "this session has too many joiners")
            return
        peer = self._new_id(PEER_ID_LENGTH, session.peers)
        session.peers[peer] = client
        client.session, client.peer_id = session, peer
        ice = self.ice_servers(session.id)  # fresh TURN credentials for both ends
        self.metrics.inc("beach_joins_total")
        client.send(server_message("joined", session=session.id, peer=peer, ice_servers=ice))
        text = server_message("peer_joined", peer=peer, addr=client.addr[:64], ice_servers=ice)
        if isinstance(session.host, RemoteClient):  # the host is on another instance
            self.cluster.publish(  # type: ignore[union-attr]
                session.host.inst,
                {
                    "op": "peer_joined",
                    "sid": session.id,
                    "peer": peer,
                    "inst": self.cluster.inst,  # type: ignore[union-attr]
                    "addr": client.addr[:64],
                    "text": text,
                },
            )
        else:
            session.host.send(text)

    def _join_refused(self, client: Client, code: str, message: str) -> None:
        self.metrics.inc("beach_join_failures_total", reason=code)
        client.error(code, message)

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
        peer = session.peers.pop(msg["peer"], None)
        if peer is not None:
            peer.session, peer.peer_id = None, None
            peer.error("dropped", msg.get("reason") or "the host closed this join attempt")
            peer.close_after_flush()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _forget(self, client: Client) -> None:
        session = client.session
        if session is None:
            return
        client.session = None
        if client.peer_id is not None:
            peer_id, client.peer_id = client.peer_id, None
            if session.peers.pop(peer_id, None) is not None and session.host:
                text = server_message("peer_left", peer=peer_id)
                if isinstance(session.host, RemoteClient):
                    self.cluster.publish(  # type: ignore[union-attr]
                        session.host.inst,
                        {"op": "peer_left", "sid": session.id, "peer": peer_id, "text": text},
                    )
                else:
                    session.host.send(text)
            if session.mirror and not session.peers:
                self.sessions.pop(session.id, None)
            return
        if session.host is client:
            self._release(client)
            # Keep the session for a grace period so the host can reclaim it after a blip.
            session.host, session.host_lost_at = None, time.monotonic()
            for peer in session.peers.values():
                peer.session, peer.peer_id = None, None
                peer.send(server_message("host_left", reason="the host disconnected"))
                peer.close_after_flush()
            session.peers.clear()
            log.info("session %s: host disconnected", session.id)
            if self.cluster is not None:
                self._spawn(self.cluster.release(session.id, self.limits.host_grace_seconds))

    # -- cluster (beach serve --redis) ----------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cluster_prepare(self, client: Client, msg: dict[str, Any]) -> bool:
        """Before `host` or `join` for a session this instance does not hold, learn where it
        lives from Redis. False if the message has been answered already."""
        assert self.cluster is not None
        sid = msg.get("session")
        if msg["type"] not in ("host", "join") or sid is None or sid in self.sessions:
            return True
        if client.session is not None:
            return True
        if msg["type"] == "host":
            found = await self.cluster.lookup(sid)
            reclaim = msg.get("reclaim") or ""
            if found is not None and secrets.compare_digest(found[1], reclaim):
                # The host moves here (its instance died, or it reconnected elsewhere).
                self.sessions[sid] = Session(sid, reclaim, None)
                if found[0] != self.cluster.inst and found[2]:
                    self.cluster.publish(found[0], {"op": "close", "sid": sid, "to": "host"})
            elif found is not None:
                # Known elsewhere under another key: refuse, rather than let anyone adopt it.
                client.error(E_UNKNOWN_SESSION, f"session {sid} cannot be reclaimed")
                return False
        elif msg["type"] == "join":
            found = await self.cluster.lookup(sid)
            if found is not None and found[0] != self.cluster.inst:
                inst, _, alive = found
                host = RemoteClient(self.cluster, inst, sid, "host") if alive else None
                self.sessions[sid] = Session(sid, "", host, mirror=True)
        return True

    async def _cluster_after(self, client: Client, msg: dict[str, Any]) -> None:
        assert self.cluster is not None
        if msg["type"] == "host" and client.session is not None:
            await self.cluster.claim(client.session.id, client.session.reclaim)
        elif msg["type"] == "join":
            session = self.sessions.get(msg["session"])
            if session is not None and session.mirror and not session.peers:
                del self.sessions[session.id]  # the join failed: no mirror to keep

    def _hosted_here(self) -> list[tuple[str, str]]:
        return [(s.id, s.reclaim) for s in self.sessions.values() if isinstance(s.host, Client)]

    def _on_cluster_event(self, event: dict[str, Any]) -> None:
        """An event published to this instance by another one."""
        op, sid = event.get("op"), event.get("sid")
        session = self.sessions.get(sid) if isinstance(sid, str) else None
        if session is None:
            return
        to = event.get("to")
        target = session.host if to == "host" else session.peers.get(to)
        if op == "deliver" and isinstance(target, Client):
            target.send(str(event.get("text", "")))
        elif op == "close" and isinstance(target, Client):
            if to == "host":
                self._forget(target)
            else:
                session.peers.pop(to, None)
                target.session, target.peer_id = None, None
            target.close_after_flush()
        elif op == "peer_joined" and isinstance(session.host, Client):
            peer = str(event.get("peer"))
            session.peers[peer] = RemoteClient(
                self.cluster,
                str(event.get("inst")),
                session.id,
                peer,
                str(event.get("addr")),  # type: ignore[arg-type]
            )
            session.host.send(str(event.get("text", "")))
        elif op == "peer_left" and isinstance(session.host, Client):
            if session.peers.pop(str(event.get("peer")), None) is not None:
                session.host.send(str(event.get("text", "")))

    def _release(self, host: Client) -> None:
        self._hosted[host.addr] -= 1
        if self._hosted[host.addr] <= 0:
            del self._hosted[host.addr]

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            now = time.monotonic()
            grace = self.limits.host_grace_seconds
            for sid, session in list(self.sessions.items()):
                if (
                    session.host is None
                    and session.host_lost_at
                    and now - session.host_lost_at > grace
                ):
                    del self.sessions[sid]
                    log.info("session %s expired", sid)
            self._by_addr.prune()
            self._by_session.prune()

    @staticmethod
    def _new_id(length: int, taken: dict[str, Any]) -> str:
        while True:
            candidate = "".join(secrets.choice(ALPHABET) for _ in range(length))
            if candidate not in taken:
                return candidate


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
    )
    await runner.setup()
    site = GatedSite(runner, host, port, server.gate, ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.bound
