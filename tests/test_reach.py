"""Judging from ICE candidates whether a direct path could open (reach.py)."""

from __future__ import annotations

import ipaddress

from beach_cli.link.reach import Candidate, candidates, may_connect

HOME = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("fe80::/64")]


def line(ip: str, kind: str) -> str:
    extra = " raddr 0.0.0.0 rport 0" if kind != "host" else ""
    return f"a=candidate:abc 1 udp 2130706431 {ip} 50000 typ {kind}{extra}"


def test_candidates_are_read_from_sdp_and_junk_is_skipped():
    sdp = "\r\n".join(
        [
            "v=0",
            line("192.168.1.7", "host"),
            line("203.0.113.9", "srflx"),
            "a=candidate:broken",
            "a=candidate:x 1 udp 1 not-an-ip 1 typ host",
            line("2001:db8::1", "relay"),
        ]
    )
    assert candidates(sdp) == [
        Candidate("192.168.1.7", "host"),
        Candidate("203.0.113.9", "srflx"),
        Candidate("2001:db8::1", "relay"),
    ]


def test_both_sides_reachable_from_outside_may_connect():
    here = [Candidate("192.168.1.7", "host"), Candidate("198.51.100.2", "srflx")]
    there = [Candidate("10.0.0.5", "host"), Candidate("198.51.100.9", "relay")]
    assert may_connect(here, there, HOME)


def test_a_side_without_any_outward_candidate_cannot_reach_a_foreign_network():
    # This network lets no UDP out: STUN and TURN both failed, only the LAN address is left.
    here = [Candidate("192.168.1.7", "host")]
    there = [Candidate("10.0.0.5", "host"), Candidate("198.51.100.9", "srflx")]
    assert not may_connect(here, there, HOME)
    assert not may_connect(there, here, [ipaddress.ip_network("10.0.0.0/24")])


def test_the_same_network_may_connect_without_any_server():
    here = [Candidate("192.168.1.7", "host")]
    assert may_connect(here, [Candidate("192.168.1.20", "host")], HOME)


def test_a_public_address_counts_as_reachable():
    here = [Candidate("8.8.4.4", "host")]  # a server with a public address, no STUN needed
    assert may_connect(here, [Candidate("1.1.1.1", "host")], HOME)
    assert not may_connect(here, [Candidate("10.9.9.9", "host")], HOME)


def test_address_families_are_not_mixed():
    assert not may_connect([], [Candidate("::ffff:192.168.1.9", "host")], HOME[:1])
