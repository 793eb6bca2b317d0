"""Several `beach serve` processes sharing sessions through Redis (`beach serve --redis URL`).

Each instance keeps its own WebSockets. Redis holds which instance each session's host is on
(`beach:s:<session>` = {inst, ticket}: a SHA-256 of the host's reclaim ticket, which can be
compared with a ticket but not presented as one) and which instances are alive
(`beach:i:<inst>`, a key that expires unless refreshed). Every instance must sign tickets with
the same key (the same `--state-file`): `beach:k` names the cluster's key by its fingerprint,
and an instance with another key refuses to start. Messages for a client on another instance
are published on that instance's channel (`beach:c:<inst>`) and delivered there. A joiner's
instance keeps a mirror of the session whose host is a `RemoteClient`, and the host's instance
records remote joiners the same way (remote.py): signals and relayed frames reach them through
`send()` as they reach any client.

Only this module imports Redis, and only `beach serve --redis` imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .. import tasks
from ..errors import BeachError

log = logging.getLogger("beach.cluster")

ALIVE_TTL = 10  # seconds an instance counts as alive after its last heartbeat
HEARTBEAT = 3.0
OP_TIMEOUT = 3.0


class ClusterUnavailable(BeachError):
    """Redis cannot be reached, or its cluster signs tickets with another key: the instance
    does not start."""


# What a lost or stuck Redis raises.
ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class Cluster:
    def __init__(
        self,
        url: str,
        on_event: Callable[[dict[str, Any]], None],
        hosted: Callable[[], list[tuple[str, str]]] = list,
        key_id: str = "",
    ) -> None:
        self.url = url
        self.inst = secrets.token_hex(6)
        # decode_responses: answers are str (redis' types cannot know it: see the casts).
        self.redis = aioredis.from_url(url, decode_responses=True, socket_timeout=OP_TIMEOUT)
        self._on_event = on_event
        self._hosted = hosted  # (session, ticket digest) of the hosts connected here
        self.key_id = key_id  # fingerprint of the reclaim-ticket key
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(10_000)
        self.healthy = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._beat(), OP_TIMEOUT)
            cluster_key = await asyncio.wait_for(self._record_key(), OP_TIMEOUT)
        except ERRORS as exc:
            raise ClusterUnavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
        if cluster_key != self.key_id:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.delete(f"beach:i:{self.inst}"), OP_TIMEOUT)
            raise ClusterUnavailable(
                "this instance signs reclaim tickets with another key than the cluster at "
                f"{self.url}: give every instance a copy of the same --state-file"
            )
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._listen_loop()),
            asyncio.create_task(self._publish_loop()),
        ]
        log.info("cluster instance %s on %s", self.inst, self.url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await tasks.stop(task)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.delete(f"beach:i:{self.inst}"), OP_TIMEOUT)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def _record_key(self) -> str | None:
        """Name this instance's ticket key in Redis unless one is named; return the name."""
        await self.redis.set("beach:k", self.key_id, nx=True)
        return cast("str | None", await self.redis.get("beach:k"))

    async def _beat(self) -> None:
        await self.redis.set(f"beach:i:{self.inst}", "1", ex=ALIVE_TTL)
        self.healthy = True

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(HEARTBEAT)
            beats += 1
            was_healthy = self.healthy
            try:
                await asyncio.wait_for(self._beat(), OP_TIMEOUT)
                # After an outage (Redis may have restarted empty), and every 30 s anyway,
                # write down again which sessions this instance holds.
                if not was_healthy or beats % 10 == 0:
                    await asyncio.wait_for(self._reclaim_all(), 5 * OP_TIMEOUT)
                    if await asyncio.wait_for(self._record_key(), OP_TIMEOUT) != self.key_id:
                        log.error("another instance signs reclaim tickets with another key")
            except ERRORS as exc:
                if self.healthy:
                    log.warning("Redis unreachable: %s", exc)
                self.healthy = False

    async def _reclaim_all(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for sid, digest in self._hosted():
            pipe.hset(f"beach:s:{sid}", mapping={"inst": self.inst, "ticket": digest})
            pipe.persist(f"beach:s:{sid}")
        await pipe.execute()

    async def _listen_loop(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(f"beach:c:{self.inst}")
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    try:
                        event = json.loads(msg["data"])
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        self._on_event(event)
            except (RedisError, OSError) as exc:
                log.warning("cluster channel lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)

    async def _publish_loop(self) -> None:
        while True:
            inst, text = await self._outbox.get()
            try:
                await asyncio.wait_for(self.redis.publish(f"beach:c:{inst}", text), OP_TIMEOUT)
            except ERRORS as exc:
                log.warning("cluster publish failed: %s", exc)

    def publish(self, inst: str, event: dict[str, Any]) -> None:
        """Queue an event for another instance (in order; never blocks the caller)."""
        try:
            self._outbox.put_nowait((inst, json.dumps(event)))
        except asyncio.QueueFull:
            log.warning("cluster outbox full: dropping an event for %s", inst)

    # -- the registry ----------------------------------------------------------------------------

    async def claim(self, sid: str, digest: str) -> None:
        """This instance now holds the host of `sid`, whose ticket has this digest."""
        await asyncio.wait_for(
            self.redis.hset(f"beach:s:{sid}", mapping={"inst": self.inst, "ticket": digest}),
            OP_TIMEOUT,
        )
        await asyncio.wait_for(self.redis.persist(f"beach:s:{sid}"), OP_TIMEOUT)

    async def release(self, sid: str, grace: float) -> None:
        """The host left this instance: keep the record for the grace period only (unless the
        host has meanwhile moved to another instance)."""
        key = f"beach:s:{sid}"
        with contextlib.suppress(*ERRORS):
            if await asyncio.wait_for(self.redis.hget(key, "inst"), OP_TIMEOUT) == self.inst:
                await asyncio.wait_for(self.redis.expire(key, max(int(grace), 1)), OP_TIMEOUT)

    async def lookup(self, sid: str) -> tuple[str, str, bool] | None:
        """(instance, ticket digest, instance alive) for a session in the cluster, if any."""
        rec = cast(
            "dict[str, str]",
            await asyncio.wait_for(self.redis.hgetall(f"beach:s:{sid}"), OP_TIMEOUT),
        )
        if not rec or "inst" not in rec:
            return None
        return rec["inst"], rec.get("ticket", ""), await self.alive(rec["inst"])

    async def alive(self, inst: str) -> bool:
        """Whether instance `inst` has sent its heartbeat lately."""
        return bool(await asyncio.wait_for(self.redis.exists(f"beach:i:{inst}"), OP_TIMEOUT))

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), OP_TIMEOUT))
        except ERRORS:
            return False
