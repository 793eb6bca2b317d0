"""`beach serve` that also writes every message it receives to a file, one per line: lets a
test check what the server saw, even when the server runs in another network namespace.

Usage: python recording_server.py HOST RECORD_FILE
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO

from beach_cli.server.app import Client, SignalServer, start_server


class RecordingServer(SignalServer):
    def __init__(self, out: IO[str]) -> None:
        super().__init__()
        self.out = out

    async def _dispatch(self, client: Client, raw: str) -> None:
        self.out.write(raw.replace("\n", "\\n") + "\n")
        self.out.flush()
        await super()._dispatch(client, raw)


async def main(host: str, out: IO[str]) -> None:
    runner, port = await start_server(host, 0, RecordingServer(out))
    print(f"listening on ws://{host}:{port}/ws", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    with open(sys.argv[2], "w") as record:
        asyncio.run(main(sys.argv[1], record))
