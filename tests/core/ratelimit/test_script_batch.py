"""Script calls batched into pipelines: each call keeps its own answer and error, and none runs twice."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from atoma_proxy.core.ratelimit.script_batch import ScriptBatch
from tests.core.ratelimit.conftest import REDIS_URL
from tests.support.processes import free_port

# Adds ARGV[1] to KEYS[1] and answers the new value; ARGV[1] = "boom" makes the script fail.
COUNT = """
if ARGV[1] == 'boom' then return redis.error_reply('boom') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def key() -> str:
    return f"atoma:test:batch:{secrets.token_hex(6)}"


async def test_concurrent_calls_each_get_their_own_answer_and_run_once(client: aioredis.Redis, key: str) -> None:
    batch = ScriptBatch(client, COUNT)
    try:
        answers = await asyncio.gather(*(batch([key], ["1"]) for _ in range(300)))
        alone = await batch([key], ["1000"])
    finally:
        await batch.aclose()
        stored = int(await client.get(key))
        await client.delete(key)

    assert sorted(answers) == list(range(1, 301))  # one increment each, in some order, none lost or repeated
    assert alone == 1300 and stored == 1300


async def test_one_failing_call_fails_alone(client: aioredis.Redis, key: str) -> None:
    batch = ScriptBatch(client, COUNT)
    try:
        answers = await asyncio.gather(
            *(batch([key], ["boom" if i == 3 else "1"]) for i in range(8)), return_exceptions=True
        )
    finally:
        await batch.aclose()
        stored = int(await client.get(key))
        await client.delete(key)

    assert isinstance(answers[3], ResponseError) and "boom" in str(answers[3])
    assert sorted(a for i, a in enumerate(answers) if i != 3) == list(range(1, 8))  # type: ignore[type-var]
    assert stored == 7


async def test_a_script_redis_forgot_is_loaded_again_and_no_call_runs_twice(client: aioredis.Redis, key: str) -> None:
    batch = ScriptBatch(client, COUNT)
    try:
        assert await batch([key], ["1"]) == 1
        await client.script_flush()  # as after a restart of Redis: every EVALSHA answers NOSCRIPT
        answers = await asyncio.gather(*(batch([key], ["1"]) for _ in range(50)))
    finally:
        await batch.aclose()
        stored = int(await client.get(key))
        await client.delete(key)

    assert sorted(answers) == list(range(2, 52))
    assert stored == 51


async def test_when_redis_cannot_be_reached_every_call_fails_and_none_waits(key: str) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    batch = ScriptBatch(client, COUNT)
    try:
        answers = await asyncio.gather(*(batch([key], ["1"]) for _ in range(20)), return_exceptions=True)
    finally:
        await batch.aclose()
        await client.aclose()

    assert all(isinstance(answer, (RedisConnectionError, OSError)) for answer in answers)
