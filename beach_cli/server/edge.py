"""The server's edge, before a connection is a WebSocket: who a client is (its address, as told
by a trusted reverse proxy or seen on the socket), how long it may take to finish its HTTP
upgrade, how many unfinished ones one address may hold, and TLS."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import BeachError
from .metrics import Metrics

log = logging.getLogger("beach.server")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Which header a trusted proxy writes the client's address into.
XFF = "x-forwarded-for"
FORWARDED = "forwarded"
PROXY_HEADERS = (XFF, FORWARDED)


@dataclass
class EdgeLimits:
    header_timeout: float = 5.0  # seconds from accept (or TLS handshake) to a finished upgrade
    pending_per_address: int = 64  # connections one address holds that have not upgraded yet
    trusted_proxies: tuple[IPNetwork, ...] = ()
    proxy_header: str = XFF


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`--trusted-proxy ADDR|CIDR` values; a bad one is a BeachError naming it."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise BeachError(f"--trusted-proxy {value!r}: not an address or network") from exc
    return tuple(nets)


def _ip(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # Forwarded: for="192.0.2.60:47011"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class ClientAddress:
    """The address a client is counted under. The socket's peer, unless that peer is a trusted
    proxy: then the rightmost address in the proxy's header that is not itself a trusted proxy
    (what a client wrote in the header sits left of what the proxies appended, so it is never
    believed). Headers from anyone else are ignored."""

    def __init__(self, trusted: tuple[IPNetwork, ...] = (), header: str = XFF) -> None:
        if header not in PROXY_HEADERS:
            raise BeachError(f"proxy header must be one of {', '.join(PROXY_HEADERS)}")
        self.trusted = trusted
        self.header = header

    def is_trusted(self, addr: IPAddress | None) -> bool:
        return addr is not None and any(addr in net for net in self.trusted)

    def peer_trusted(self, peer: str | None) -> bool:
        return bool(self.trusted) and self.is_trusted(_ip(peer or ""))

    def of(self, request: web.BaseRequest) -> str:
        peer = request.remote or "?"
        peer_ip = _ip(peer)
        if peer_ip is None or not self.is_trusted(peer_ip):
            return str(peer_ip or peer)
        for hop in reversed(self._hops(request)):
            addr = _ip(hop)
            if addr is None:
                break  # garbage from a trusted proxy: count the proxy itself
            if not self.is_trusted(addr):
                return str(addr)
        return str(peer_ip)

    def _hops(self, request: web.BaseRequest) -> list[str]:
        if self.header == XFF:
            return [h for v in request.headers.getall(XFF, []) for h in v.split(",") if h.strip()]
        hops = []
        for element in request.forwarded:  # aiohttp parses RFC 7239 into one mapping per hop
            hops.append(element.get("for", ""))
        return hops


@dataclass
class _Pending:
    addr: str
    counted: bool
    timer: asyncio.TimerHandle | None = None


@dataclass
class ConnectionGate:
    """Connections that have not finished their WebSocket upgrade: each gets `header_timeout`
    seconds, and one address holds at most `pending_per_address` of them at once (a trusted
    proxy holds any number: it has its own timeouts). A slowloris then holds a bounded number
    of descriptors for a bounded time, whatever it opens."""

    limits: EdgeLimits
    addresses: ClientAddress
    metrics: Metrics = field(default_factory=Metrics)
    pending: dict[Any, _Pending] = field(default_factory=dict)  # by transport
    by_addr: Counter[str] = field(default_factory=Counter)
    refused: int = 0

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        peer = transport.get_extra_info("peername")
        addr = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        counted = not self.addresses.peer_trusted(addr)
        if counted and self.by_addr[addr] >= self.limits.pending_per_address:
            self.refused += 1
            self.metrics.inc("beach_connections_refused_total")
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning(
                    "refused %d connections so far: too many unfinished from %s", self.refused, addr
                )
            return False
        entry = _Pending(addr, counted)
        if counted:
            self.by_addr[addr] += 1
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(self.limits.header_timeout, self._expire, transport)
        self.pending[transport] = entry
        return True

    def upgraded(self, transport: Any) -> None:
        """The connection is a WebSocket now: its lifetime is the server's business."""
        self._release(transport)

    def lost(self, transport: Any) -> None:
        self._release(transport)

    def _release(self, transport: Any) -> None:
        entry = self.pending.pop(transport, None)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        if entry.counted:
            self.by_addr[entry.addr] -= 1
            if self.by_addr[entry.addr] <= 0:
                del self.by_addr[entry.addr]

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        entry = self.pending.get(transport)
        if entry is None:
            return
        self.metrics.inc("beach_connections_timed_out_total")
        log.debug("closing a connection from %s: no upgrade within the header timeout", entry.addr)
        # Plain HTTP requests (health checks) were answered long ago: closing is polite enough.
        self._release(transport)
        transport.abort()  # type: ignore[attr-defined]


class GateProtocol(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: shows the connection to the gate first and
    forwards everything to aiohttp only if the gate admits it."""

    def __init__(self, inner: asyncio.Protocol, gate: ConnectionGate) -> None:
        self.inner = inner
        self.gate = gate
        self.transport: asyncio.BaseTransport | None = None
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.gate.admit(transport):
            transport.abort()  # type: ignore[attr-defined]  # no answer: it would cost more
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.gate.lost(self.transport)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


class GatedSite(web.BaseSite):
    """A TCP site (optionally TLS) whose connections pass the gate."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        gate: ConnectionGate,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host, self._port, self.gate = host, port, gate
        self.bound = port

    @property
    def name(self) -> str:
        scheme = "wss" if self._ssl_context else "ws"
        return f"{scheme}://{self._host}:{self.bound}/ws"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GateProtocol(server(), self.gate),
            self._host,
            self._port,
            ssl=self._ssl_context,
            # A TLS handshake happens before the gate sees the connection: give it the same time.
            ssl_handshake_timeout=self.gate.limits.header_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=True,
        )
        sockets = self._server.sockets
        if sockets:
            self.bound = sockets[0].getsockname()[1]


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate chain and its key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise BeachError(f"{flag} {path}: {exc.strerror or exc}") from exc
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise BeachError(f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}") from exc
    return ctx
