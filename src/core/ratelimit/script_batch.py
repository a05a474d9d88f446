"""Script calls of many concurrent requests sent to Redis together: one round trip per batch.

Under load a core admits many requests at once; each admission is one Lua script call. Sent one by one,
each costs redis-py a connection checkout, a write and a read of its own (about 50 µs of this process's
CPU, measured in `bench/README.md`); sent as one pipeline they cost about a third of that each, and
Redis reads them in one go. Calls that arrive while a batch is on the wire form the next batch, so a
lone call (no concurrency) goes out at once, exactly as before.

Each script call stays atomic and keeps its own answer or error (a pipeline without MULTI: Redis runs
the scripts one after another, as it would separate calls). A failure of the connection fails every
call of the batch, as it would have failed each alone. A script Redis no longer holds (NOSCRIPT, after
a restart or SCRIPT FLUSH) is loaded and the calls that were refused for it are sent again; the calls
Redis did run are never sent twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from atoma_proxy.core.futures import resolve

__all__ = ["ScriptBatch"]


@dataclass(slots=True, eq=False)
class _Call:
    keys: list[str]
    args: list[str]
    reply: asyncio.Future[Any]


class ScriptBatch:
    """`await batch(keys, args)`: the reply of one call of `script`, sent with the calls made meanwhile."""

    def __init__(self, client: aioredis.Redis, script: str, *, max_batch: int = 128) -> None:
        self._client = client
        self._script = client.register_script(script)
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._sending: asyncio.Task[None] | None = None
        self._alone = False  # a call is on the wire by itself

    async def __call__(self, keys: list[str], args: list[str]) -> Any:
        if self._sending is None and not self._alone:  # nothing else under way: send it from here, no task
            self._alone = True
            try:
                return await self._script(keys=keys, args=args)
            finally:
                self._alone = False
        call = _Call(keys, args, asyncio.get_running_loop().create_future())
        self._queue.append(call)
        if self._sending is None:
            self._sending = asyncio.create_task(self._send(), name="redis-script-batch")
        return await call.reply

    async def _send(self) -> None:
        batch: list[_Call] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                batch = [call for call in batch if not call.reply.done()]  # a caller that went away
                try:
                    if len(batch) == 1:
                        call = batch[0]
                        resolve(call.reply, await self._script(keys=call.keys, args=call.args))
                    elif batch:
                        await self._send_pipelined(batch)
                except Exception as error:  # the connection: every call of the batch fails with it
                    for call in batch:
                        resolve(call.reply, error=error)
        except BaseException as error:  # cancelled (shutdown): no caller is left waiting for ever
            for call in batch + self._queue:
                resolve(call.reply, error=error)
            self._queue = []
            raise
        finally:
            # In the same step as the last look at the queue: a call queued after it starts a new sender.
            self._sending = None

    async def _send_pipelined(self, batch: list[_Call]) -> None:
        replies = await self._pipelined(batch)
        answered = [(call, reply) for call, reply in zip(batch, replies, strict=True)]
        missing = [call for call, reply in answered if isinstance(reply, NoScriptError)]
        if missing:  # Redis lost the script: nothing of those calls ran; load it and send them again
            await self._client.script_load(self._script.script)
            answered = [(call, reply) for call, reply in answered if not isinstance(reply, NoScriptError)]
            answered += zip(missing, await self._pipelined(missing), strict=True)
        for call, reply in answered:
            if isinstance(reply, Exception):
                resolve(call.reply, error=reply)
            else:
                resolve(call.reply, reply)

    async def _pipelined(self, batch: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command("EVALSHA", self._script.sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        while self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)
