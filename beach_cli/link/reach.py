"""Whether a direct (or TURN) path between two peers could open at all, judged from the ICE
candidates both sides gathered: so a joiner on a network that lets no UDP out does not sit
through the whole direct attempt before the server relay.

The judgement is cautious: "unlikely" only shortens the direct attempt, it never skips it (a
routed private network, for one, connects directly without anything here to show it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Candidate:
    ip: str
    kind: str  # host, srflx, prflx, relay


def candidates(sdp: str) -> list[Candidate]:
    """The candidates in an SDP ("a=candidate:<foundation> <component> <transport> <priority>
    <address> <port> typ <type> ..."); lines that do not parse are skipped."""
    found = []
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        fields = line.split()
        try:
            kind = fields[fields.index("typ") + 1]
            ipaddress.ip_address(fields[4])
        except (ValueError, IndexError):
            continue
        found.append(Candidate(fields[4], kind))
    return found


def local_networks() -> list[Network]:
    """The networks this machine's interfaces are on."""
    import ifaddr  # ctypes: only when a joiner needs it, not on every start

    nets: list[Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                nets.append(ipaddress.ip_network(f"{addr}/{ip.network_prefix}", strict=False))
            except ValueError:
                continue
    return nets


def _outward(side: list[Candidate]) -> bool:
    """Whether this side can be reached from beyond its own network: it learned a public
    mapping (STUN), holds a TURN relay, or has a public address of its own."""
    return any(
        c.kind in ("srflx", "prflx", "relay") or ipaddress.ip_address(c.ip).is_global for c in side
    )


def may_connect(local: list[Candidate], remote: list[Candidate], networks: list[Network]) -> bool:
    """True if some direct or TURN path could open: both sides reachable from outside their own
    networks, or the remote side on one of our own networks."""
    if _outward(local) and _outward(remote):
        return True
    for c in remote:
        if c.kind == "host":
            ip = ipaddress.ip_address(c.ip)
            if any(ip.version == net.version and ip in net for net in networks):
                return True
    return False
