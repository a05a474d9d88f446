"""Proto request -> the OpenAI JSON object a node receives.

The wire messages type only the fields the proxy reads (model, token caps, sampling, stream);
every other OpenAI field travels in `extra_json` at request, message and content-part level.
The node body is `{**typed, **extra}` at each level: typed fields that are set (unset `optional`
fields are absent, not 0; non-presence fields are absent when they hold the proto default), then
the parsed extra object, which wins on a shared key. That merge is what lets the facade keep an
object the proto types only partly (`stream_options`, an `image_url` with provider keys) by
sending it whole in `extra_json`.

This runs once per request on the core's hot path: direct attribute access and orjson, no
`MessageToDict` (which is ~20x slower and would print proto defaults the client never sent).
Malformed `extra_json` or contradictory typed fields raise `InvalidRequest` naming the field.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf import json_format

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.json_depth import MAX_JSON_DEPTH, too_deep
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = ["chat_completion_body", "completion_body", "embeddings_body", "images_body", "put_output_cap"]


def chat_completion_body(req: pb.ChatCompletionRequest) -> dict[str, Any]:
    """The chat completion request the node receives."""
    body: dict[str, Any] = {"model": req.model, "messages": [_message_body(m, i) for i, m in enumerate(req.messages)]}
    if req.HasField("max_tokens"):
        body["max_tokens"] = req.max_tokens
    if req.HasField("max_completion_tokens"):
        body["max_completion_tokens"] = req.max_completion_tokens
    if req.HasField("temperature"):
        body["temperature"] = req.temperature
    if req.HasField("top_p"):
        body["top_p"] = req.top_p
    if req.HasField("n"):
        body["n"] = req.n
    _put_stream(body, req)
    if req.stop:
        body["stop"] = list(req.stop)
    if req.HasField("seed"):
        body["seed"] = req.seed
    if req.HasField("presence_penalty"):
        body["presence_penalty"] = req.presence_penalty
    if req.HasField("frequency_penalty"):
        body["frequency_penalty"] = req.frequency_penalty
    if req.user:
        body["user"] = req.user
    if req.HasField("extra"):
        _put_structured_extra(body, req.extra, _CHAT_GOVERNED)
    return _merge_extra(body, req.extra_json, "extra_json", _CHAT_GOVERNED)


def completion_body(req: pb.CompletionRequest) -> dict[str, Any]:
    """The (legacy) text completion request the node receives."""
    body: dict[str, Any] = {"model": req.model}
    prompt = _text_or_tokens(req.prompt, req.prompt_tokens, "prompt")
    if prompt is not None:
        body["prompt"] = prompt
    if req.HasField("max_tokens"):
        body["max_tokens"] = req.max_tokens
    if req.HasField("temperature"):
        body["temperature"] = req.temperature
    if req.HasField("top_p"):
        body["top_p"] = req.top_p
    if req.HasField("n"):
        body["n"] = req.n
    _put_stream(body, req)
    if req.stop:
        body["stop"] = list(req.stop)
    if req.HasField("seed"):
        body["seed"] = req.seed
    if req.user:
        body["user"] = req.user
    return _merge_extra(body, req.extra_json, "extra_json", _COMPLETION_GOVERNED)


def embeddings_body(req: pb.EmbeddingsRequest) -> dict[str, Any]:
    """The embeddings request the node receives."""
    body: dict[str, Any] = {"model": req.model}
    inputs = _text_or_tokens(req.input, req.input_tokens, "input")
    if inputs is not None:
        body["input"] = inputs
    if req.encoding_format:
        body["encoding_format"] = req.encoding_format
    if req.HasField("dimensions"):
        body["dimensions"] = req.dimensions
    if req.user:
        body["user"] = req.user
    return _merge_extra(body, req.extra_json, "extra_json", _EMBEDDINGS_GOVERNED)


def images_body(req: pb.GenerateImagesRequest) -> dict[str, Any]:
    """The image generation request the node receives."""
    body: dict[str, Any] = {"model": req.model, "prompt": req.prompt}
    if req.HasField("n"):
        body["n"] = req.n
    if req.size:
        body["size"] = req.size
    if req.quality:
        body["quality"] = req.quality
    if req.response_format:
        body["response_format"] = req.response_format
    if req.style:
        body["style"] = req.style
    if req.user:
        body["user"] = req.user
    return _merge_extra(body, req.extra_json, "extra_json", _IMAGES_GOVERNED)


def put_output_cap(body: dict[str, Any], cap: int, *, chat: bool) -> None:
    """Tell the node the output cap the proxy reserved for, in every cap field of the route's API.

    Chat reads `max_completion_tokens` and, older servers, `max_tokens`: both get the cap. Legacy
    completions define only `max_tokens`: it gets the cap, and a `max_completion_tokens` from
    extra_json is removed, so no node can honour a cap other than the one that was reserved.
    """
    body["max_tokens"] = cap
    if chat:
        body["max_completion_tokens"] = cap
    else:
        body.pop("max_completion_tokens", None)


def _put_stream(body: dict[str, Any], req: pb.ChatCompletionRequest | pb.CompletionRequest) -> None:
    # OpenAI-compatible servers reject stream_options on a non-streaming request.
    if req.stream:
        body["stream"] = True
        if req.HasField("stream_options"):
            body["stream_options"] = {"include_usage": req.stream_options.include_usage}


def _message_body(message: chat_pb2.ChatMessage, index: int) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role}
    content = message.WhichOneof("content")
    if message.HasField("content_value"):  # OpenAI's content, as JSON: preferred to text/parts
        value = plain_json(message.content_value)
        if type(value) is not str and type(value) is not list:
            param = f"messages[{index}].content"
            raise InvalidRequest(f"`{param}` must be a string or an array of content parts.", param=param)
        body["content"] = value
    elif content == "text":
        body["content"] = message.text
    elif content == "parts":
        body["content"] = [_part_body(p, index, j) for j, p in enumerate(message.parts.parts)]
    if message.name:
        body["name"] = message.name
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    return _merge_extra(body, message.extra_json, f"messages[{index}].extra_json")


def _part_body(part: chat_pb2.ChatContentPart, index: int, part_index: int) -> dict[str, Any]:
    body: dict[str, Any] = {"type": part.type}
    # A text part's text is required by OpenAI, even when empty.
    if part.text or part.type == "text":
        body["text"] = part.text
    if part.HasField("image_url"):
        image_url = {"url": part.image_url.url}
        if part.image_url.detail:
            image_url["detail"] = part.image_url.detail
        body["image_url"] = image_url
    return _merge_extra(body, part.extra_json, f"messages[{index}].content[{part_index}].extra_json")


def _text_or_tokens(texts: Any, tokens: Any, name: str) -> list[Any] | None:
    """OpenAI's `prompt`/`input`: a list of strings or a list of token arrays, never both."""
    if texts and tokens:
        raise InvalidRequest(f"`{name}` and `{name}_tokens` are mutually exclusive.", param=f"{name}_tokens")
    if texts:
        return list(texts)
    if tokens:
        return [list(t.ids) for t in tokens]
    return None


def plain_json(message: Any) -> Any:
    """A google.protobuf.Value/Struct as plain JSON, integral floats as integers (proto JSON has no integers)."""
    pending: list[Any] = [value := json_format.MessageToDict(message)]
    while pending:
        node = pending.pop()
        items = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
        for key, item in items:
            if type(item) is float and item.is_integer() and abs(item) < 2**53:
                node[key] = int(item)
            elif type(item) is dict or type(item) is list:
                pending.append(item)
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _put_structured_extra(body: dict[str, Any], extra: Any, governed: frozenset[str]) -> None:
    fields = plain_json(extra)
    if too_deep(fields):
        raise InvalidRequest(f"`extra` nests deeper than {MAX_JSON_DEPTH} levels.", param="extra")
    if not governed.isdisjoint(fields):
        shadowed = sorted(governed.intersection(fields))
        raise InvalidRequest(f"`extra` must not set {', '.join(shadowed)}: use the typed fields.", param="extra")
    body.update(fields)


# Per endpoint, the fields the proxy routes and meters by: only their typed form may set them,
# never extra_json, or a caller could be priced for one request and run another.
_CHAT_GOVERNED = frozenset({"model", "messages", "n", "max_tokens", "max_completion_tokens", "stream"})
_COMPLETION_GOVERNED = frozenset({"model", "prompt", "n", "max_tokens", "stream"})
_EMBEDDINGS_GOVERNED = frozenset({"model", "input"})
_IMAGES_GOVERNED = frozenset({"model", "prompt", "n", "size"})


def _merge_extra(
    body: dict[str, Any], extra_json: str, param: str, governed: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not extra_json:
        return body
    try:
        extra = orjson.loads(extra_json)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"`{param}` is not valid JSON: {error}", param=param) from None
    if type(extra) is not dict:
        raise InvalidRequest(f"`{param}` must be a JSON object.", param=param)
    if too_deep(extra):
        raise InvalidRequest(f"`{param}` nests deeper than {MAX_JSON_DEPTH} levels.", param=param)
    if not governed.isdisjoint(extra):
        shadowed = sorted(governed.intersection(extra))
        raise InvalidRequest(f"`{param}` must not set {', '.join(shadowed)}: use the typed fields.", param=param)
    body.update(extra)
    return body
