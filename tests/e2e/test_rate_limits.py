"""Rate limits end to end: two `atoma-proxy core` processes that share one Redis.

    node-sim ◀── core A ◀── facade ◀── openai SDK
             ◀── core B ◀────────────── gRPC stub
    core A and core B: one SQLite database, one Redis, 3 requests per minute per API key.

Run twice: core A and the facade as two processes (gRPC between them), and as one `atoma-proxy
serve` whose facade calls core A in-process, through the same rate-limit interceptor.

Every test takes a fresh user and key, so the tests do not share buckets; at 3 per minute a
bucket refills one request every 20 s, far longer than a test runs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import openai
import pytest
import redis
from openai.types.chat import ChatCompletionMessageParam

from atoma_proxy.core.persistence import create_api_key
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import CHAT
from tests.support.stack import IN_PROCESS, OVER_GRPC, SimNode, StackFactory, Topology

REDIS_URL = os.environ.get("ATOMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY_RPM = 3
USER_TPM = 50_000
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True)
class LimitedStack:
    base_url: str  # the facade in front of core A (…/v1)
    core_b: str  # gRPC target of core B
    database_url: str

    async def new_key(self) -> str:
        return await create_api_key(self.database_url, email=f"{secrets.token_hex(6)}@rl.test", migrate=False)


@pytest.fixture(
    scope="module", params=[Topology(OVER_GRPC, "sqlite"), Topology(IN_PROCESS, "sqlite")], ids=lambda t: t.id
)
def limited_stack(request: pytest.FixtureRequest, stack_factory: StackFactory) -> Iterator[LimitedStack]:
    prefix = f"atoma-e2e:{secrets.token_hex(6)}:"
    limits = {
        "redis_url": REDIS_URL,
        "key_prefix": prefix,
        "key_requests_per_minute": KEY_RPM,
        "user_tokens_per_minute": USER_TPM,
        # A busy test machine must not turn a slow Redis reply into "Redis down" (fail open: no limits).
        "redis_timeout": 5.0,
    }
    try:
        with stack_factory(
            request.param, nodes=[SimNode("fast", chat=(CHAT,))], settings={"rate_limits": limits}, cores=2
        ) as stack:
            yield LimitedStack(stack.base_url, stack.core_targets[1], stack.database_url)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _client(base_url: str, api_key: str) -> openai.AsyncOpenAI:
    # No SDK retries: a 429 must surface, not be waited out.
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)


async def test_success_carries_openai_rate_limit_headers(limited_stack: LimitedStack) -> None:
    key = await limited_stack.new_key()
    async with _client(limited_stack.base_url, key) as api:
        response = await api.chat.completions.with_raw_response.create(model=CHAT, messages=MESSAGES, max_tokens=5)
        stream = await api.chat.completions.with_raw_response.create(
            model=CHAT, messages=MESSAGES, max_tokens=5, stream=True
        )
        chunks = stream.parse()
        assert isinstance(chunks, openai.AsyncStream)
        assert [chunk async for chunk in chunks]
    assert response.parse().choices[0].message.content
    headers = response.headers
    assert headers["x-ratelimit-limit-requests"] == str(KEY_RPM)
    assert headers["x-ratelimit-remaining-requests"] == str(KEY_RPM - 1)
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert headers["x-ratelimit-limit-tokens"] == str(USER_TPM)
    assert 0 < int(headers["x-ratelimit-remaining-tokens"]) < USER_TPM
    assert headers["x-atoma-node"] == "fast"
    assert stream.headers["x-ratelimit-remaining-requests"] == str(KEY_RPM - 2)


async def test_past_the_limit_the_sdk_raises_rate_limit_error(limited_stack: LimitedStack) -> None:
    key = await limited_stack.new_key()
    async with _client(limited_stack.base_url, key) as api:
        for _ in range(KEY_RPM):
            await api.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as refused:
            await api.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=2)
    error = refused.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert "requests per minute" in error.message
    headers = error.response.headers
    assert headers["x-ratelimit-limit-requests"] == str(KEY_RPM)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 0 < int(headers["retry-after"]) <= 60 // KEY_RPM
    assert 0 < int(headers["retry-after-ms"]) <= 60_000 // KEY_RPM


async def test_two_core_processes_enforce_one_shared_limit(limited_stack: LimitedStack) -> None:
    key = await limited_stack.new_key()
    request = pb.ChatCompletionRequest(
        model=CHAT, messages=[chat_pb2.ChatMessage(role="user", text="Hello")], max_tokens=2
    )

    async def via_core_b(stub: pb_grpc.RoutingServiceStub) -> str:
        try:
            [event async for event in stub.ChatCompletion(request, metadata=(("authorization", f"Bearer {key}"),))]
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return "refused"
        return "ok"

    async def via_core_a(api: openai.AsyncOpenAI) -> str:
        try:
            await api.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=2)
        except openai.RateLimitError:
            return "refused"
        return "ok"

    outcomes = []
    async with _client(limited_stack.base_url, key) as api, grpc.aio.insecure_channel(limited_stack.core_b) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        for _ in range(KEY_RPM):
            outcomes += [await via_core_a(api), await via_core_b(stub)]
    # With limits per process this would be 2 x 3 successes.
    assert outcomes == ["ok"] * KEY_RPM + ["refused"] * KEY_RPM
