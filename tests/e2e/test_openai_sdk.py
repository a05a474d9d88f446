"""The official `openai` SDK against a running facade -> core -> simulated nodes."""

from __future__ import annotations

import asyncio
import base64

import httpx
import openai
import pytest

from tests.e2e.conftest import BROKEN_CHAT, CHAT, EMBED, IMAGE, SLOW_CHAT, Stack

MESSAGES = [{"role": "user", "content": "Tell me about routing."}]


def client(stack: Stack, api_key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.base_url, api_key=api_key or stack.api_key, max_retries=0)


async def test_chat_completion_non_streaming(stack: Stack) -> None:
    async with client(stack) as api:
        response = await api.chat.completions.with_raw_response.create(model=CHAT, messages=MESSAGES, max_tokens=5)
    completion = response.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    assert len(completion.choices[0].message.content.split()) == 5
    assert response.headers["x-atoma-node"] in {"fast", "steady"}
    assert response.headers["x-atoma-attempts"] == "1"
    assert response.headers["x-request-id"]


async def test_chat_stream_without_usage_has_no_usage_chunk(stack: Stack) -> None:
    async with client(stack) as api:
        stream = await api.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=6, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert len(text.split()) == 6
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_chat_stream_with_usage_ends_with_exact_usage(stack: Stack) -> None:
    async with client(stack) as api:
        stream = await api.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=7, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == len(text.split()) == 7


async def test_stream_is_relayed_as_openai_sse(stack: Stack) -> None:
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 3, "stream": True}
    headers = {"authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{stack.base_url}/chat/completions", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert response.text.endswith("data: [DONE]\n\n")


async def test_completions(stack: Stack) -> None:
    async with client(stack) as api:
        completion = await api.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=4)
        stream = await api.completions.create(model=CHAT, prompt=["a", "b"], max_tokens=2, stream=True)
        chunks = [c async for c in stream]
    assert completion.object == "text_completion"
    assert completion.usage.completion_tokens == 4
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}


async def test_embeddings_float_and_base64_agree(stack: Stack) -> None:
    async with client(stack) as api:
        floats = await api.embeddings.create(model=EMBED, input=["hello", "world"])
        raw = await api.embeddings.with_raw_response.create(model=EMBED, input="hello", encoding_format="base64")
    assert [d.index for d in floats.data] == [0, 1]
    assert floats.usage.prompt_tokens > 0
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert len(base64.b64decode(encoded)) == 4 * len(floats.data[0].embedding)


async def test_images(stack: Stack) -> None:
    async with client(stack) as api:
        images = await api.images.generate(
            model=IMAGE, prompt="a node", n=2, size="256x256", response_format="b64_json"
        )
    assert len(images.data) == 2
    assert base64.b64decode(images.data[0].b64_json).startswith(b"\x89PNG")


async def test_models_lists_every_configured_model(stack: Stack) -> None:
    async with client(stack) as api:
        models = await api.models.list()
    assert {m.id for m in models.data} == {CHAT, SLOW_CHAT, BROKEN_CHAT, EMBED, IMAGE}
    assert all(m.object == "model" and m.owned_by == "atoma" for m in models.data)


async def test_wrong_api_key_is_authentication_error(stack: Stack) -> None:
    async with client(stack, api_key="sk-atoma-" + "x" * 40) as api:
        with pytest.raises(openai.AuthenticationError) as caught:
            await api.chat.completions.create(model=CHAT, messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"


async def test_missing_api_key_is_authentication_error(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{stack.base_url}/chat/completions", json={"model": CHAT, "messages": MESSAGES})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


async def test_unknown_model_is_not_found(stack: Stack) -> None:
    async with client(stack) as api:
        with pytest.raises(openai.NotFoundError) as caught:
            await api.chat.completions.create(model="no/such-model", messages=MESSAGES, stream=True)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


async def test_failing_node_is_service_unavailable(stack: Stack) -> None:
    async with client(stack) as api:
        with pytest.raises(openai.InternalServerError) as caught:
            await api.chat.completions.create(model=BROKEN_CHAT, messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.code == "node_failed"


async def test_bad_json_and_wrong_types_are_bad_requests(stack: Stack) -> None:
    headers = {"authorization": f"Bearer {stack.api_key}", "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        bad_json = await http.post(f"{stack.base_url}/chat/completions", content=b"{not json", headers=headers)
        wrong_type = await http.post(
            f"{stack.base_url}/chat/completions",
            json={"model": CHAT, "messages": MESSAGES, "max_tokens": "many"},
            headers=headers,
        )
        empty = await http.post(
            f"{stack.base_url}/chat/completions", json={"model": CHAT, "messages": []}, headers=headers
        )
    for response in (bad_json, wrong_type, empty):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert wrong_type.json()["error"]["param"] == "max_tokens"
    assert empty.json()["error"]["param"] == "messages"


async def test_unknown_openai_fields_reach_the_node_unchanged(stack: Stack) -> None:
    extra = {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "logit_bias": {"50256": -100},
        "vendor_extension": {"nested": [1, 2.5, "é", None, {"big": 12345678901234567890}]},
    }
    async with httpx.AsyncClient() as http:
        await http.delete(f"{stack.nodes['slow']}/sim/requests")
        async with client(stack) as api:
            await api.chat.completions.create(model=SLOW_CHAT, messages=MESSAGES, max_tokens=1, extra_body=extra)
        received = (await http.get(f"{stack.nodes['slow']}/sim/requests")).json()
    body = received[-1]["body"]
    for key, value in extra.items():
        assert body[key] == value, key
    assert body["messages"] == MESSAGES


async def test_client_disconnect_cancels_the_node_request(stack: Stack) -> None:
    node = stack.nodes["slow"]
    headers = {"authorization": f"Bearer {stack.api_key}"}
    body = {"model": SLOW_CHAT, "messages": MESSAGES, "stream": True}
    async with httpx.AsyncClient(timeout=30) as http:
        before = (await http.get(f"{node}/sim/stats")).json()["cancelled"]
        async with http.stream("POST", f"{stack.base_url}/chat/completions", json=body, headers=headers) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            received = [line async for line in _take(lines, 6)]
            assert len(received) == 6
        for _ in range(200):  # until the node notices, bounded
            stats = (await http.get(f"{node}/sim/stats")).json()
            if stats["cancelled"] > before:
                break
            await asyncio.sleep(0.05)
    assert stats["cancelled"] == before + 1
    assert stats["in_flight"] == 0


async def _take(lines, count: int):  # type: ignore[no-untyped-def]
    async for line in lines:
        if line:
            yield line
            count -= 1
            if count == 0:
                return
