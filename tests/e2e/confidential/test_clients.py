"""The confidential clients against the running deployment: REST and gRPC, async and blocking,
streaming and not; a key rotated between lock and request is retried inside the call."""

from __future__ import annotations

import httpx
import pytest

from atoma_proxy.clients import AsyncConfidentialClient, ConfidentialClient, ConfidentialError
from atoma_proxy.clients._confidential import LockGrant, RestTransport
from tests.e2e._ledger import stored_ledger
from tests.e2e.confidential.stack import ADMIN_TOKEN, CHAT, EMBED, IMAGE, ConfidentialStack

CANARY = "CANARY-7f3a9c-confidential-secret"
MESSAGES = [{"role": "user", "content": f"tell me about {CANARY}"}]


@pytest.fixture(params=["rest", "grpc"])
async def client(request: pytest.FixtureRequest, conf: ConfidentialStack):  # type: ignore[no-untyped-def]
    if request.param == "rest":
        made = AsyncConfidentialClient.rest(conf.facade_url, api_key=conf.api_key)
    else:
        made = await AsyncConfidentialClient.grpc(conf.core_target, api_key=conf.api_key)
    async with made:
        yield made


async def test_chat_create_and_stream(client: AsyncConfidentialClient) -> None:
    result = await client.chat_completion_create(model=CHAT, messages=MESSAGES, max_tokens=4)
    assert result.data["object"] == "chat.completion" and result.data["choices"][0]["message"]["content"]
    assert result.usage is not None and result.usage["completion_tokens"] == 4 and result.attempts == 1
    chunks = [chunk async for chunk in client.chat_completion(model=CHAT, messages=MESSAGES, max_tokens=3)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text.strip()
    assert chunks[-1]["usage"]["completion_tokens"] == 3  # the usage chunk, decrypted like the rest


async def test_completions_embeddings_images(client: AsyncConfidentialClient) -> None:
    result = await client.completion_create(model=CHAT, prompt=f"say {CANARY}", max_tokens=2)
    assert result.data["choices"][0]["text"]
    streamed = [c async for c in client.completion(model=CHAT, prompt="count", max_tokens=2)]
    assert any(c.get("choices") and c["choices"][0].get("text") for c in streamed)
    embedded = await client.embeddings(model=EMBED, input=f"embed {CANARY}")
    assert embedded.data["data"][0]["embedding"] and embedded.usage is not None
    images = await client.generate_images(model=IMAGE, prompt=f"draw {CANARY}", n=1, size="256x256")
    assert len(images.data["data"]) == 1 and images.usage == {"images": 1}


async def test_errors_are_typed_with_the_proxys_reason(client: AsyncConfidentialClient) -> None:
    with pytest.raises(ConfidentialError) as raised:
        await client.chat_completion_create(model="conf/unknown", messages=MESSAGES)
    assert raised.value.reason == "MODEL_NOT_FOUND" and not raised.value.retryable


class RotateAfterFirstLock(RestTransport):
    """Rotates the node's key right after the first lock: the first attempt meets a stale key."""

    def __init__(self, conf: ConfidentialStack) -> None:
        super().__init__(conf.facade_url, conf.api_key)
        self.sidecar_url = conf.sidecar_url
        self.locks: list[LockGrant] = []

    async def lock(self, model, endpoint, max_num_tokens, timeout, exclude=()):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        grant = await super().lock(model, endpoint, max_num_tokens, timeout, exclude)
        self.locks.append(grant)
        if len(self.locks) == 1:
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    f"{self.sidecar_url}/v1/rotate-key", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
                )
            assert response.status_code == 200
        return grant


async def test_key_rotation_between_lock_and_request_is_retried_inside_the_call(conf: ConfidentialStack) -> None:
    before = await stored_ledger(conf.database_url, "conf@atoma.test")
    transport = RotateAfterFirstLock(conf)
    async with AsyncConfidentialClient(transport) as client:
        result = await client.chat_completion_create(model=CHAT, messages=MESSAGES, max_tokens=2)
    assert result.attempts == 2 and result.data["choices"][0]["message"]["content"]
    assert transport.locks[0].public_key != transport.locks[1].public_key
    after = await stored_ledger(conf.database_url, "conf@atoma.test")
    known = {r.request_id for r in before.records}
    new = [r for r in after.records if r.request_id not in known and r.outcome != "lock_expired"]  # others' locks
    assert sorted((r.outcome, r.cost > 0) for r in new) == [("error", False), ("ok", True)]  # stale, then the retry
    assert after.held <= before.held


async def test_a_stream_rotated_before_it_starts_is_retried(conf: ConfidentialStack) -> None:
    async with AsyncConfidentialClient(RotateAfterFirstLock(conf)) as client:
        chunks = [c async for c in client.chat_completion(model=CHAT, messages=MESSAGES, max_tokens=2)]
    assert chunks and chunks[-1]["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_blocking_client(conf: ConfidentialStack, kind: str) -> None:
    if kind == "rest":
        client = ConfidentialClient.rest(conf.facade_url, api_key=conf.api_key)
    else:
        client = ConfidentialClient.grpc(conf.core_target, api_key=conf.api_key)
    with client:
        result = client.chat_completion_create(model=CHAT, messages=MESSAGES, max_tokens=2)
        assert result.usage is not None and result.usage["completion_tokens"] == 2
        chunks = list(client.chat_completion(model=CHAT, messages=MESSAGES, max_tokens=2))
        assert chunks[-1]["usage"]["completion_tokens"] == 2
        assert client.embeddings(model=EMBED, input="x").data["data"]
