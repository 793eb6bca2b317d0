"""An asyncio loop in a thread: attackers and hostile servers run there while the test drives
blocking pexpect."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any


class LoopThread:
    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout  # default wait for `call`
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def call(self, coro: Awaitable[Any], timeout: float | None = None) -> Any:
        return self.submit(coro).result(timeout or self.timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
