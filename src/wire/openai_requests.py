"""OpenAI request JSON (already parsed) -> RoutingService request messages: the one translation.

The facade translates every REST body with it and the Python clients their keyword fields, so a
request means the same on both paths. It is the inverse of `atoma_proxy.core.node_requests`:
fields the proto types go into the message (after a type check that names the offending param,
so a wrong type is OpenAI's 400, never a 500), every other field goes, unchanged, into
`extra_json` at the same level (request, message, content part). `node_body(translate(body))` is
the client's body, up to these normalisations, each of which the node reads exactly as OpenAI
reads the original:

1. `stop`, `prompt` and `input` given as a string become a list of one; a flat token array
   (`[1, 2]`) becomes a list of one token array (`[[1, 2]]`).
2. A typed field given as null, or as the proto default of a field without presence
   (`"stream": false`, `""` for plain strings, `[]` for lists), is dropped: OpenAI treats
   both as "not given". A message `"content": null` is dropped too.
3. `stream_options` is dropped unless `stream` is true (OpenAI rejects it otherwise).
4. An integer given for a float field (`"temperature": 1`) becomes a float, an integral float
   given for an integer field (`"max_tokens": 16.0`) an integer.

Objects the proto types only partly (`stream_options` with keys beyond `include_usage`, an
`image_url` with keys beyond `url`/`detail`) are typed for the core *and* kept whole in
`extra_json`, which wins when the node body is merged, so provider keys survive.
Required fields (`model`, `messages`, `input`, `prompt` of images) are checked here so the
caller gets OpenAI's 400 without a round trip; the core checks them again.

Every rejection is an `OpenAIRequestError` (`json_values`). The work is one pass over the body's
keys with a setter per typed field: no MessageToDict/ParseDict, this is on the facade's hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.wire.json_values import (
    INT32,
    INT64,
    boolean,
    dumps_object,
    integer,
    missing,
    number,
    string,
    wrong_type,
)
from atoma_proxy.wire.openai_messages import messages

__all__ = [
    "chat_completion_request",
    "completion_request",
    "create_response_request",
    "embeddings_request",
    "generate_images_request",
]

Setter = Callable[[Any, Any, dict[str, Any]], None]


def chat_completion_request(body: Mapping[str, Any]) -> pb.ChatCompletionRequest:
    """A chat completion request (`POST /v1/chat/completions`), `messages` and `model` required."""
    _require(body, "model", "messages")
    return _translate(body, pb.ChatCompletionRequest(), _CHAT_FIELDS, streams=True)


def completion_request(body: Mapping[str, Any]) -> pb.CompletionRequest:
    """A (legacy) text completion request (`POST /v1/completions`), `model` required."""
    _require(body, "model")
    return _translate(body, pb.CompletionRequest(), _COMPLETION_FIELDS, streams=True)


def embeddings_request(body: Mapping[str, Any]) -> pb.EmbeddingsRequest:
    """An embeddings request (`POST /v1/embeddings`), `model` and `input` required."""
    _require(body, "model", "input")
    return _translate(body, pb.EmbeddingsRequest(), _EMBEDDINGS_FIELDS, streams=False)


def generate_images_request(body: Mapping[str, Any]) -> pb.GenerateImagesRequest:
    """An image generation request (`POST /v1/images/generations`), `model` (the proxy routes by it) and
    `prompt` required."""
    _require(body, "model", "prompt")
    return _translate(body, pb.GenerateImagesRequest(), _IMAGES_FIELDS, streams=False)


def create_response_request(body: dict[str, Any]) -> pb.CreateResponseRequest:
    """A Responses API request (`POST /v1/responses`): the body whole, as JSON text; the core reads it."""
    return pb.CreateResponseRequest(request_json=dumps_object(body))


def _translate(body: Mapping[str, Any], message: Any, fields: dict[str, Setter], *, streams: bool) -> Any:
    extra: dict[str, Any] = {}
    for key, value in body.items():
        setter = fields.get(key)
        if setter is None:
            extra[key] = value
        elif value is not None:
            setter(message, value, extra)
    if streams and not message.stream:
        message.ClearField("stream_options")
        extra.pop("stream_options", None)
    if extra:
        message.extra_json = dumps_object(extra)
    return message


def _require(body: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if body.get(name) is None:
            raise missing(name)


# --- setters: one per typed field, (message, json value, extra of this level) ----------------


def _model(message: Any, value: Any, extra: dict[str, Any]) -> None:
    message.model = string(value, "model")


def _plain_string(name: str) -> Setter:
    def put(message: Any, value: Any, extra: dict[str, Any]) -> None:
        text = string(value, name)
        if text:
            setattr(message, name, text)

    return put


def _optional_integer(name: str, bounds: tuple[int, int]) -> Setter:
    def put(message: Any, value: Any, extra: dict[str, Any]) -> None:
        setattr(message, name, integer(value, name, bounds))

    return put


def _optional_number(name: str) -> Setter:
    def put(message: Any, value: Any, extra: dict[str, Any]) -> None:
        setattr(message, name, number(value, name))

    return put


def _stream(message: Any, value: Any, extra: dict[str, Any]) -> None:
    message.stream = boolean(value, "stream")


def _stream_options(message: Any, value: Any, extra: dict[str, Any]) -> None:
    if type(value) is not dict:
        raise wrong_type("stream_options", "an object")
    include_usage = value.get("include_usage")
    message.stream_options.SetInParent()
    if include_usage is not None:
        message.stream_options.include_usage = boolean(include_usage, "stream_options.include_usage")
    if include_usage is None or len(value) != 1:
        extra["stream_options"] = value


def _stop(message: Any, value: Any, extra: dict[str, Any]) -> None:
    if type(value) is str:
        message.stop.append(value)
        return
    if type(value) is not list:
        raise wrong_type("stop", "a string or an array of strings")
    message.stop.extend([string(item, f"stop[{i}]") for i, item in enumerate(value)])


def _texts_or_tokens(name: str, tokens_field: str) -> Setter:
    """`prompt`/`input`: a string, strings, a token array, or token arrays."""

    def put(message: Any, value: Any, extra: dict[str, Any]) -> None:
        texts = getattr(message, name)
        if type(value) is str:
            texts.append(value)
            return
        if type(value) is not list:
            raise wrong_type(name, "a string, an array of strings or an array of token arrays")
        if not value:
            return
        tokens = getattr(message, tokens_field)
        first = value[0]
        if type(first) is str:
            texts.extend([string(item, f"{name}[{i}]") for i, item in enumerate(value)])
        elif type(first) is int or type(first) is float:
            tokens.add().ids.extend(_token_ids(value, name))
        else:
            for i, item in enumerate(value):
                if type(item) is not list:
                    raise wrong_type(f"{name}[{i}]", "an array of integers")
                tokens.add().ids.extend(_token_ids(item, f"{name}[{i}]"))

    return put


def _token_ids(value: list[Any], param: str) -> list[int]:
    # One type pass and a min/max for the usual all-int array; the per-token path names the culprit.
    if all(type(token) is int for token in value) and (
        not value or (min(value) >= INT64[0] and max(value) <= INT64[1])
    ):
        return value
    return [integer(token, f"{param}[{i}]", INT64) for i, token in enumerate(value)]


_COMMON_STREAMING: dict[str, Setter] = {
    "model": _model,
    "max_tokens": _optional_integer("max_tokens", INT64),
    "temperature": _optional_number("temperature"),
    "top_p": _optional_number("top_p"),
    "n": _optional_integer("n", INT32),
    "stream": _stream,
    "stream_options": _stream_options,
    "stop": _stop,
    "seed": _optional_integer("seed", INT64),
    "user": _plain_string("user"),
}
_CHAT_FIELDS: dict[str, Setter] = {
    **_COMMON_STREAMING,
    "messages": messages,
    "max_completion_tokens": _optional_integer("max_completion_tokens", INT64),
    "presence_penalty": _optional_number("presence_penalty"),
    "frequency_penalty": _optional_number("frequency_penalty"),
}
_COMPLETION_FIELDS: dict[str, Setter] = {**_COMMON_STREAMING, "prompt": _texts_or_tokens("prompt", "prompt_tokens")}
_EMBEDDINGS_FIELDS: dict[str, Setter] = {
    "model": _model,
    "input": _texts_or_tokens("input", "input_tokens"),
    "encoding_format": _plain_string("encoding_format"),
    "dimensions": _optional_integer("dimensions", INT32),
    "user": _plain_string("user"),
}
_IMAGES_FIELDS: dict[str, Setter] = {
    "model": _model,
    "prompt": lambda message, value, extra: setattr(message, "prompt", string(value, "prompt")),
    "n": _optional_integer("n", INT32),
    "size": _plain_string("size"),
    "quality": _plain_string("quality"),
    "response_format": _plain_string("response_format"),
    "style": _plain_string("style"),
    "user": _plain_string("user"),
}
