"""Trickled candidates from a browser (beach_cli/link/rtc.py): its mDNS (`<uuid>.local`)
candidates may take aioice's 1 s multicast wait each and mostly never resolve; the host must
neither hold the next handshake message for them nor keep more than a few resolving."""

from __future__ import annotations

import asyncio

import pytest

from beach_cli.link.rtc import MDNS_PENDING, PeerLink

pytestmark = pytest.mark.e2e  # a real aiortc peer connection


def mdns(i: int) -> dict:
    name = f"{i:08x}-1111-4222-8333-444455556666.local"
    return {
        "t": "candidate",
        "candidate": f"candidate:{i} 1 udp 2122260223 {name} {50000 + i} typ host generation 0",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }


async def test_mdns_candidates_resolve_aside_and_only_a_few_at_once() -> None:
    offerer = PeerLink([], lambda kind, body: None, name="host")
    answerer = PeerLink([], lambda kind, body: None, name="browser")
    try:
        answer = await answerer.accept_offer(await offerer.make_offer())
        await offerer.accept_answer(answer)
        for i in range(3 * MDNS_PENDING):
            # Each returns before its name is resolved: nothing waits on the multicast query.
            await asyncio.wait_for(offerer.add_candidate(mdns(i)), 0.5)
        assert 0 < len(offerer._resolving) <= MDNS_PENDING
        assert not any(task.done() for task in offerer._resolving)
        # A plain candidate behind them is applied at once.
        plain = mdns(99) | {"candidate": "candidate:9 1 udp 2122260223 10.9.9.9 9 typ host"}
        await asyncio.wait_for(offerer.add_candidate(plain), 0.5)
    finally:
        pending = list(offerer._resolving)
        await offerer.close()
        await answerer.close()
    # Closing the link cancels what it still resolves: no task outlives its owner.
    await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
    assert all(task.done() for task in pending)
