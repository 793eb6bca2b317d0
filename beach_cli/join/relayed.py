"""The joiner's end of the server relay: frames to the host go out as `relay` messages on the
signaling connection, and the host's come back on it, both sealed with the join's key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .. import tasks
from ..errors import BeachError
from ..keys import KeyExchange
from ..link.relay import RelayLink
from ..rendezvous import SignalingClient
from ..text import printable
from ..wire.frames import Frame

log = logging.getLogger("beach.dial")


async def relay_through(
    sig: SignalingClient,
    kx: KeyExchange,
    on_frame: Callable[[Frame, bytes], None],
    ask: bool = True,
) -> RelayLink:
    """Ask the host for the relay (unless `ask` is False: an early-relay join, where both ends
    agreed on it already) and carry frames through the server; from now on the link owns the
    signaling connection (closing the link hangs up). The host's relayed frames may follow our
    request at once: they wait on the connection until the reader takes them."""
    if ask:
        await sig.send("signal", to="host", data=kx.seal({"t": "relay"}))

    async def send_text(text: str) -> None:
        await sig.send("relay", to="host", data=text)

    link = RelayLink(kx, send_text, on_frame, "host (relayed)")

    async def reader() -> None:
        try:
            while True:
                msg = await sig.recv()
                if msg["type"] == "relay":
                    link.deliver(msg["data"])
                elif msg["type"] == "host_left":
                    link.mark_lost("the host left")
                    return
                elif msg["type"] == "error":
                    log.warning("server: %s", printable(str(msg["message"])))
        except BeachError as exc:
            link.mark_lost(f"lost the server: {exc.message}")

    task = asyncio.create_task(reader())

    async def stop() -> None:
        await tasks.stop(task)
        await sig.close()

    link.on_shutdown.append(stop)
    await link.wait_open(1.0)
    return link
