"""This machine's address as other machines on its network would reach it."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

import ifaddr


def advertised_address() -> str:
    """The source address of the default route, else the first non-loopback IPv4 address."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # connect() on UDP only picks a route; no packet is sent.
        s.connect(("10.255.255.255", 9))
        addr = s.getsockname()[0]
        if not ipaddress.ip_address(addr).is_loopback:
            return addr
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                parsed = ipaddress.ip_address(ip.ip)
                if not parsed.is_loopback and not parsed.is_link_local:
                    return ip.ip
    return "127.0.0.1"
