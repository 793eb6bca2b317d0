"""TURN credentials in coturn's REST scheme, the ICE servers the server hands out, and
/metrics."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import aiohttp

from beach_cli.link.ice import merge
from beach_cli.server.app import SignalServer, start_server
from beach_cli.server.turn import IceConfig, turn_credentials
from beach_cli.wire.signaling import client_message, parse_server_message


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    username, password = turn_credentials("s3cret", "abc234", ttl=3600, now=1_700_000_000)
    assert username == "1700003600:abc234"
    expected = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_servers_list_stun_then_turn_with_fresh_credentials() -> None:
    ice = IceConfig(["stun:s.example:3478"], ["turn:t.example:3478?transport=udp"], "k", 600)
    servers = ice.servers("sess01")
    assert servers[0] == {"urls": ["stun:s.example:3478"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:t.example:3478?transport=udp"]
    expiry, label = turn["username"].split(":")
    assert label == "sess01" and abs(int(expiry) - (time.time() + 600)) < 5


def test_merge_keeps_own_urls_first_and_ignores_junk() -> None:
    offered = [{"urls": ["stun:b"]}, "junk", {"urls": ["stun:a"]}]
    assert merge(["stun:a"], offered) == [{"urls": ["stun:a"]}, {"urls": ["stun:b"]}]
    assert merge([], "not a list") == []


async def test_server_mints_credentials_per_session_for_both_ends() -> None:
    ice = IceConfig([], ["turn:127.0.0.1:3478"], "topsecret", 3600)
    runner, port = await start_server("127.0.0.1", 0, SignalServer(ice=ice))
    try:
        async with aiohttp.ClientSession() as http:
            url = f"ws://127.0.0.1:{port}/ws"
            host = await asyncio.wait_for(http.ws_connect(url), 5)
            await host.receive_json(timeout=5)  # welcome
            await host.send_str(client_message("host"))
            reg = parse_server_message(await host.receive_str(timeout=5))
            sid = reg["session"]
            joiner = await asyncio.wait_for(http.ws_connect(url), 5)
            await joiner.receive_json(timeout=5)
            await joiner.send_str(client_message("join", session=sid))
            joined = parse_server_message(await joiner.receive_str(timeout=5))
            peer_joined = parse_server_message(await host.receive_str(timeout=5))
            for msg in (reg, joined, peer_joined):
                (turn,) = msg["ice_servers"]
                assert turn["username"].endswith(f":{sid}")
                digest = hmac.new(b"topsecret", turn["username"].encode(), hashlib.sha1)
                assert base64.b64decode(turn["credential"]) == digest.digest()
            await host.close()
            await joiner.close()
    finally:
        await runner.cleanup()


async def test_metrics_in_prometheus_text_format() -> None:
    runner, port = await start_server("127.0.0.1", 0, SignalServer())
    try:
        async with aiohttp.ClientSession() as http:
            url = f"ws://127.0.0.1:{port}/ws"
            host = await asyncio.wait_for(http.ws_connect(url), 5)
            await host.receive_json(timeout=5)
            await host.send_str(client_message("host"))
            sid = parse_server_message(await host.receive_str(timeout=5))["session"]
            bad = await asyncio.wait_for(http.ws_connect(url), 5)
            await bad.receive_json(timeout=5)
            await bad.send_str(client_message("join", session="nosuch"))
            await bad.receive_json(timeout=5)
            joiner = await asyncio.wait_for(http.ws_connect(url), 5)
            await joiner.receive_json(timeout=5)
            await joiner.send_str(client_message("join", session=sid))
            await joiner.receive_json(timeout=5)
            await joiner.send_str(client_message("relay", to="host", data="Y2lwaGVy"))
            await host.receive_str(timeout=5)  # peer_joined
            await host.receive_str(timeout=5)  # the relayed frame
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200 and resp.content_type == "text/plain"
                text = await resp.text()
            for conn in (host, bad, joiner):
                await conn.close()
    finally:
        await runner.cleanup()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert values["beach_sessions"] == "1"
    assert values["beach_peers"] == "1"
    assert values["beach_joins_total"] == "1"
    assert values['beach_join_failures_total{reason="unknown_session"}'] == "1"
    assert values["beach_relayed_messages_total"] == "1"
    assert values["beach_relayed_bytes_total"] == "8"
    assert "# TYPE beach_joins_total counter" in text
