"""The data channel's module (rtc.py, and aiortc behind it) imported in a worker thread.

Importing aiortc costs ~0.3 s of CPU. On the event loop that stalls everything else for as
long, and on a starved machine far longer: a host importing it on its first joiner missed its
server's WebSocket heartbeat (10 s for the pong, under load) and lost every join under way. In
a thread the loop keeps running, and both ends start the import early, while they talk to the
server."""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType

RTC_MODULE = "beach_cli.link.rtc"


async def load_rtc() -> ModuleType:
    """rtc.py, imported off the event loop (at once if it is already)."""
    # import_module waits on the module's lock if another thread is importing it: the thread
    # waits, not the loop.
    return await asyncio.to_thread(importlib.import_module, RTC_MODULE)
