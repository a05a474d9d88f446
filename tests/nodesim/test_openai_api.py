"""The OpenAI surface, exercised with the official SDK."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from atoma_proxy.nodesim import RunningNodeSim
from atoma_proxy.sim_words import chat_prompt_tokens, count_tokens
from tests.nodesim.helpers import CHAT, EMBED, HELLO, IMAGE, StartSim, openai_client

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_chat_completion_shape_and_usage(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        completion = await client.chat.completions.create(model=CHAT, messages=HELLO)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == CHAT
    [choice] = completion.choices
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant"
    assert count_tokens(choice.message.content or "") == 16  # reply_tokens
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == chat_prompt_tokens(HELLO) == 4 + 3 + 3
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 16


async def test_chat_caps_and_choices(start_sim: StartSim) -> None:
    sim = await start_sim(reply_tokens=8)
    async with openai_client(sim) as client:
        capped = await client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=3, n=3)
        both = await client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=50, max_completion_tokens=5)
        roomy = await client.chat.completions.create(model=CHAT, messages=HELLO, max_completion_tokens=50)
        forced = await client.chat.completions.create(
            model=CHAT, messages=HELLO, max_tokens=20, extra_body={"ignore_eos": True}
        )
    assert [c.index for c in capped.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" and count_tokens(c.message.content or "") == 3 for c in capped.choices)
    assert len({c.message.content for c in capped.choices}) > 1  # choices differ
    assert capped.usage is not None and capped.usage.completion_tokens == 9
    assert both.choices[0].finish_reason == "length"  # max_completion_tokens wins over max_tokens
    assert both.usage is not None and both.usage.completion_tokens == 5
    assert roomy.choices[0].finish_reason == "stop"
    assert roomy.usage is not None and roomy.usage.completion_tokens == 8
    assert forced.usage is not None and forced.usage.completion_tokens == 20


async def test_same_request_gives_same_text(start_sim: StartSim) -> None:
    first, second = await start_sim(), await start_sim()
    replies = []
    for node in (first, first, second):
        async with openai_client(node) as client:
            completion = await client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=12)
            replies.append(completion.choices[0].message.content)
    assert replies[0] == replies[1] == replies[2]
    async with openai_client(first) as client:
        other = await client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Something else"}], max_tokens=12
        )
    assert other.choices[0].message.content != replies[0]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(sim: RunningNodeSim, include_usage: bool) -> None:
    async with openai_client(sim) as client:
        stream = await client.chat.completions.create(
            model=CHAT,
            messages=HELLO,
            stream=True,
            max_tokens=6,
            n=2,
            stream_options={"include_usage": True} if include_usage else openai.omit,
        )
        chunks = [chunk async for chunk in stream]
        reference = await client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=6, n=2)
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    with_choices = [chunk for chunk in chunks if chunk.choices]
    for index in (0, 1):
        mine = [chunk.choices[0] for chunk in with_choices if chunk.choices[0].index == index]
        assert mine[0].delta.role == "assistant" and mine[0].delta.content == ""
        contents = [choice.delta.content for choice in mine[1:-1]]
        assert all(content and count_tokens(content) == 1 for content in contents)
        assert len(contents) == 6
        assert mine[-1].finish_reason == "length" and mine[-1].delta.content is None
        assert "".join(contents) == reference.choices[index].message.content  # streaming = same text
    streamed_tokens = sum(count_tokens(c.choices[0].delta.content or "") for c in with_choices)
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    if include_usage:
        assert all(chunk.usage is None for chunk in with_choices)
        assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
        usage = chunks[-1].usage
        assert usage is not None
        assert usage.completion_tokens == streamed_tokens == 12
        assert usage.prompt_tokens == chat_prompt_tokens(HELLO)
        assert usage.total_tokens == usage.prompt_tokens + 12
    else:
        assert usage_chunks == [] and len(with_choices) == len(chunks)


async def test_stream_wire_format(sim: RunningNodeSim) -> None:
    body = {"model": CHAT, "messages": HELLO, "stream": True, "max_tokens": 2}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sim.url}/v1/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") for event in events[:-2])
    assert len(events[:-2]) == 1 + 2 + 1  # role, two tokens, finish
    assert '"usage"' not in response.text


async def test_completions(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        single = await client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=4)
        batch = await client.completions.create(model=CHAT, prompt=["one", "two words"], n=2)
        tokens = await client.completions.create(model=CHAT, prompt=[1, 2, 3, 4, 5])
        token_batch = await client.completions.create(model=CHAT, prompt=[[1, 2], [3]], max_tokens=2)
        stream = await client.completions.create(
            model=CHAT, prompt="Once upon a time", max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert single.object == "text_completion" and single.id.startswith("cmpl-")
    assert single.choices[0].finish_reason == "length" and count_tokens(single.choices[0].text) == 4
    assert single.usage is not None and (single.usage.prompt_tokens, single.usage.completion_tokens) == (4, 4)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert batch.usage is not None and (batch.usage.prompt_tokens, batch.usage.completion_tokens) == (3, 64)
    assert tokens.usage is not None and tokens.usage.prompt_tokens == 5
    assert token_batch.usage is not None and (token_batch.usage.prompt_tokens, token_batch.usage.completion_tokens) == (
        3,
        4,
    )
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == single.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_embeddings_float_and_base64_agree(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        floats = await client.embeddings.create(model=EMBED, input=["alpha", "beta gamma"], encoding_format="float")
        encoded = await client.embeddings.create(model=EMBED, input=["alpha", "beta gamma"], encoding_format="base64")
        sized = await client.embeddings.create(model=EMBED, input=[[1, 2, 3]], dimensions=5, encoding_format="float")
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 3
    assert [d.index for d in floats.data] == [0, 1]
    for as_float, as_b64 in zip(floats.data, encoded.data, strict=True):
        vector = as_float.embedding
        assert len(vector) == 16
        assert abs(sum(x * x for x in vector) - 1) < 1e-5  # unit norm
        raw = base64.b64decode(as_b64.embedding)  # type: ignore[arg-type]
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector
    assert floats.data[0].embedding != floats.data[1].embedding
    assert len(sized.data[0].embedding) == 5 and sized.usage.prompt_tokens == 3


async def test_images_url_and_b64(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        by_url = await client.images.generate(model=IMAGE, prompt="a red fox", n=2, size="256x256")
        inline = await client.images.generate(model=IMAGE, prompt="a red fox", response_format="b64_json")
        with pytest.raises(openai.BadRequestError):
            await client.images.generate(model=IMAGE, prompt="a red fox", size="big")  # type: ignore[arg-type]
    assert by_url.data is not None and len(by_url.data) == 2 and by_url.created > 0
    async with httpx.AsyncClient() as http:
        for image in by_url.data:
            assert image.url is not None and image.url.startswith(f"{sim.url}/sim/images/")
            response = await http.get(image.url)
            assert response.status_code == 200 and response.headers["content-type"] == "image/png"
            assert response.content.startswith(PNG_SIGNATURE)
        missing = await http.get(f"{sim.url}/sim/images/nothing.png")
        assert missing.status_code == 404
    assert inline.data is not None and inline.data[0].b64_json is not None
    assert base64.b64decode(inline.data[0].b64_json).startswith(PNG_SIGNATURE)


async def test_models_lists_every_model(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        models = [model.id async for model in client.models.list()]
    assert models == [CHAT, EMBED, IMAGE]


async def test_unknown_model_is_404(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="no/such-model", messages=HELLO)
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model=CHAT, input="chat models do not embed")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert caught.value.type == "invalid_request_error"


async def test_bad_requests_are_400(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model=CHAT, messages=[])
        assert caught.value.param == "messages"
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=0)
    async with httpx.AsyncClient() as http:
        for content in (b"{not json", b"", b"[1, 2]"):
            response = await http.post(f"{sim.url}/v1/chat/completions", content=content)
            assert response.status_code == 400
            assert response.json()["error"]["type"] == "invalid_request_error"


async def test_api_key_is_required_when_configured(start_sim: StartSim) -> None:
    sim = await start_sim(api_key="sekret")
    async with openai_client(sim, api_key="wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model=CHAT, messages=HELLO)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    async with openai_client(sim, api_key="sekret") as client:
        completion = await client.chat.completions.create(model=CHAT, messages=HELLO)
    assert completion.choices[0].message.content
