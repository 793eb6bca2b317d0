"""Stopping a task we own without swallowing a cancellation meant for ourselves."""

from __future__ import annotations

import asyncio


async def stop(task: asyncio.Task[object] | None) -> None:
    """Cancel `task` and wait for it to end. Its own CancelledError (or error) stays with it;
    a cancellation of the caller while it waits is raised, never mistaken for the task's."""
    if task is None:
        return
    task.cancel()
    # asyncio.wait never raises what the task raised; it raises only if we are cancelled.
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: an error in a task being stopped is not news
