"""node_requests: the JSON a node receives for a request message.

The lossless round trip with the facade's translation is a property test in
tests/facade/test_translate_roundtrip.py; these pin the rules the core relies on directly.
"""

from __future__ import annotations

import orjson
import pytest

from atoma_proxy.core import node_requests
from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2, common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb


def test_unset_optional_fields_are_absent_and_set_zeroes_are_present() -> None:
    unset = pb.ChatCompletionRequest(model="m", messages=[chat_pb2.ChatMessage(role="user", text="hi")])
    zeroes = pb.ChatCompletionRequest(model="m", max_tokens=0, temperature=0.0, n=0, seed=0, presence_penalty=0.0)

    assert node_requests.chat_completion_body(unset) == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert node_requests.chat_completion_body(zeroes) == {
        "model": "m",
        "messages": [],
        "max_tokens": 0,
        "temperature": 0.0,
        "n": 0,
        "seed": 0,
        "presence_penalty": 0.0,
    }


def test_stream_options_only_when_streaming() -> None:
    options = common_pb2.StreamOptions(include_usage=True)

    streaming = node_requests.chat_completion_body(
        pb.ChatCompletionRequest(model="m", stream=True, stream_options=options)
    )
    not_streaming = node_requests.completion_body(pb.CompletionRequest(model="m", stream_options=options))

    assert streaming["stream"] is True and streaming["stream_options"] == {"include_usage": True}
    assert "stream" not in not_streaming and "stream_options" not in not_streaming


def test_extra_json_merges_at_every_level_and_wins() -> None:
    part = chat_pb2.ChatContentPart(
        type="image_url",
        image_url=chat_pb2.ImageUrl(url="u", detail="low"),
        extra_json='{"image_url": {"url": "u", "vendor": 1}}',
    )
    message = chat_pb2.ChatMessage(
        role="assistant", parts=chat_pb2.ChatContentParts(parts=[part]), extra_json='{"tool_calls": []}'
    )
    request = pb.ChatCompletionRequest(
        model="m", messages=[message], extra_json='{"tools": [{"type": "function"}], "top_k": 3}'
    )

    body = node_requests.chat_completion_body(request)

    assert body == {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "image_url", "image_url": {"url": "u", "vendor": 1}}],
                "tool_calls": [],
            }
        ],
        "tools": [{"type": "function"}],
        "top_k": 3,
    }


def test_content_shapes() -> None:
    request = pb.ChatCompletionRequest(
        model="m",
        messages=[
            chat_pb2.ChatMessage(role="assistant"),  # neither text nor parts: no content key
            chat_pb2.ChatMessage(role="user", text=""),  # empty text is still content
            chat_pb2.ChatMessage(role="user", parts=chat_pb2.ChatContentParts()),  # empty parts too
            chat_pb2.ChatMessage(role="tool", text="42", tool_call_id="c1", name="calc"),
            chat_pb2.ChatMessage(
                role="user",
                parts=chat_pb2.ChatContentParts(
                    parts=[
                        chat_pb2.ChatContentPart(type="text", text=""),
                        chat_pb2.ChatContentPart(type="input_audio", extra_json='{"input_audio": {"format": "wav"}}'),
                    ]
                ),
            ),
        ],
    )

    assert node_requests.chat_completion_body(request)["messages"] == [
        {"role": "assistant"},
        {"role": "user", "content": ""},
        {"role": "user", "content": []},
        {"role": "tool", "content": "42", "name": "calc", "tool_call_id": "c1"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": ""},
                {"type": "input_audio", "input_audio": {"format": "wav"}},
            ],
        },
    ]


def test_prompt_and_input_forms() -> None:
    texts = pb.CompletionRequest(model="m", prompt=["a", "b"])
    tokens = pb.EmbeddingsRequest(model="m", input_tokens=[common_pb2.TokenIds(ids=[1, 2]), common_pb2.TokenIds()])

    assert node_requests.completion_body(texts)["prompt"] == ["a", "b"]
    assert node_requests.embeddings_body(tokens)["input"] == [[1, 2], []]
    assert "prompt" not in node_requests.completion_body(pb.CompletionRequest(model="m"))


def test_images_body() -> None:
    request = pb.GenerateImagesRequest(model="m", prompt="cat", n=2, size="1x1", response_format="b64_json")

    assert node_requests.images_body(request) == {
        "model": "m",
        "prompt": "cat",
        "n": 2,
        "size": "1x1",
        "response_format": "b64_json",
    }


@pytest.mark.parametrize(
    ("request_", "build", "param"),
    [
        (pb.ChatCompletionRequest(model="m", extra_json="{"), node_requests.chat_completion_body, "extra_json"),
        (pb.EmbeddingsRequest(model="m", extra_json="[1]"), node_requests.embeddings_body, "extra_json"),
        (
            pb.ChatCompletionRequest(model="m", messages=[chat_pb2.ChatMessage(role="u", extra_json="1")]),
            node_requests.chat_completion_body,
            "messages[0].extra_json",
        ),
        (
            pb.CompletionRequest(model="m", prompt=["a"], prompt_tokens=[common_pb2.TokenIds(ids=[1])]),
            node_requests.completion_body,
            "prompt_tokens",
        ),
    ],
)
def test_malformed_requests_raise_invalid_request(request_: object, build: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        build(request_)  # type: ignore[operator]

    assert raised.value.metadata == {"param": param}


def test_body_serialises_with_orjson() -> None:
    request = pb.ChatCompletionRequest(model="m", temperature=0.1, extra_json='{"x": 18446744073709551615}')

    assert orjson.loads(orjson.dumps(node_requests.chat_completion_body(request)))["x"] == 2**64 - 1


@pytest.mark.parametrize("key", ["model", "max_tokens", "n", "stream", "messages"])
def test_extra_json_cannot_override_governed_fields(key: str) -> None:
    request = pb.ChatCompletionRequest(
        model="m", messages=[chat_pb2.ChatMessage(role="user", text="x")], extra_json=orjson.dumps({key: 1}).decode()
    )
    with pytest.raises(InvalidRequest, match=key) as caught:
        node_requests.chat_completion_body(request)
    assert caught.value.metadata == {"param": "extra_json"}


def test_the_output_cap_replaces_every_cap_field_of_the_route() -> None:
    """Issue 10.1: the node sees exactly the reserved cap; legacy completions only in `max_tokens`."""
    chat = node_requests.chat_completion_body(
        pb.ChatCompletionRequest(model="m", max_tokens=5000, max_completion_tokens=9)
    )
    node_requests.put_output_cap(chat, 9, chat=True)
    assert (chat["max_tokens"], chat["max_completion_tokens"]) == (9, 9)
    legacy = node_requests.completion_body(
        pb.CompletionRequest(model="m", prompt=["hi"], max_tokens=5000, extra_json='{"max_completion_tokens": 1}')
    )
    node_requests.put_output_cap(legacy, 1, chat=False)
    assert legacy["max_tokens"] == 1 and "max_completion_tokens" not in legacy
    uncapped = node_requests.completion_body(pb.CompletionRequest(model="m", prompt=["hi"]))
    node_requests.put_output_cap(uncapped, 4096, chat=False)
    assert uncapped["max_tokens"] == 4096


def test_content_value_and_structured_extra_become_plain_json() -> None:
    """Issue 14.10: `content` (a Value) is preferred to text; `extra` (a Struct) merges with integers restored."""
    from google.protobuf import json_format

    request = json_format.ParseDict(
        {
            "model": "m",
            "messages": [{"role": "user", "text": "ignored", "contentValue": [{"type": "text", "text": "hi"}]}],
            "extra": {"top_logprobs": 2, "logit_bias": {"50256": -100}, "temperature_scale": 0.5},
            "extraJson": '{"top_logprobs": 3}',
        },
        pb.ChatCompletionRequest(),
    )
    body = node_requests.chat_completion_body(request)
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["top_logprobs"] == 3 and type(body["logit_bias"]["50256"]) is int
    assert body["temperature_scale"] == 0.5
