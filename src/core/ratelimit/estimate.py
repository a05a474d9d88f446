"""Cheap token estimates for admission, before anything is tokenized.

prompt: one token per 4 characters of text (OpenAI's rule of thumb) plus the token ids given as
such; completion: `n` times `max_completion_tokens` / `max_tokens`, or a default when unset
(256 for chat, 16 for legacy completions, OpenAI's and vLLM's default there). Image and audio
parts are not counted. An estimate, not a bound: the request is settled to the node's reported
usage afterwards, so an error only shifts tokens between this minute's requests.
"""

from __future__ import annotations

import re

from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = [
    "DEFAULT_CHAT_COMPLETION_TOKENS",
    "DEFAULT_COMPLETION_TOKENS",
    "chat_completion_tokens",
    "completion_tokens",
    "embeddings_tokens",
    "image_tokens",
    "response_tokens",
]

DEFAULT_CHAT_COMPLETION_TOKENS = 256
DEFAULT_COMPLETION_TOKENS = 16
_CHARS_PER_TOKEN = 4
_MAX_OUTPUT = re.compile(r'"max_output_tokens"\s*:\s*([0-9]{1,9})\b')


def _text_tokens(chars: int) -> int:
    return -(-chars // _CHARS_PER_TOKEN)


def _choices(request: pb.ChatCompletionRequest | pb.CompletionRequest) -> int:
    return max(1, request.n) if request.HasField("n") else 1


def chat_completion_tokens(request: pb.ChatCompletionRequest) -> int:
    chars = 0
    for message in request.messages:
        chars += len(message.text) + len(message.name) + len(message.content_value.string_value)
        for part in message.parts.parts:
            chars += len(part.text)
    if request.HasField("max_completion_tokens"):
        completion = request.max_completion_tokens
    elif request.HasField("max_tokens"):
        completion = request.max_tokens
    else:
        completion = DEFAULT_CHAT_COMPLETION_TOKENS
    return _text_tokens(chars) + _choices(request) * max(0, completion)


def completion_tokens(request: pb.CompletionRequest) -> int:
    prompt = _text_tokens(sum(len(p) for p in request.prompt)) + sum(len(t.ids) for t in request.prompt_tokens)
    completion = request.max_tokens if request.HasField("max_tokens") else DEFAULT_COMPLETION_TOKENS
    return prompt + _choices(request) * max(0, completion)


def embeddings_tokens(request: pb.EmbeddingsRequest) -> int:
    return _text_tokens(sum(len(text) for text in request.input)) + sum(len(t.ids) for t in request.input_tokens)


def image_tokens(request: pb.GenerateImagesRequest) -> int:
    return _text_tokens(len(request.prompt))


def response_tokens(request: pb.CreateResponseRequest) -> int:
    """The whole request's characters (JSON included: a cheap upper side) plus `max_output_tokens` or
    the chat default; the servicer refuses a malformed request afterwards."""
    if request.request_json:
        chars = len(request.request_json)
        cap = _MAX_OUTPUT.search(request.request_json)
        completion = int(cap[1]) if cap else DEFAULT_CHAT_COMPLETION_TOKENS
    else:
        chars = request.request.ByteSize()
        value = request.request.fields.get("max_output_tokens")
        number = value.number_value if value is not None and value.HasField("number_value") else 0
        completion = int(number) if number >= 1 else DEFAULT_CHAT_COMPLETION_TOKENS
    return _text_tokens(chars) + completion
