"""Request protos built from OpenAI-shaped keyword fields.

Each builder takes either a prebuilt request proto or keyword fields named after the proto's fields,
with these conveniences:

- `extra={...}`: any other OpenAI request fields (tools, response_format, ...), sent as `extra_json`;
- `messages`: OpenAI message dicts (`content` a string, a list of parts or None; unknown keys such as
  `tool_calls` go to the message's `extra_json`) or ChatMessage protos;
- `prompt` / `input`: a string, a list of strings, a token list or a list of token lists;
- `stop`: a string or a list of strings;
- a field given as None is left unset, as OpenAI treats null.

Unknown keywords raise TypeError rather than travel silently to the node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import orjson
from google.protobuf.message import Message

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2, common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

RequestT = TypeVar("RequestT", bound=Message)

_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_call_id"})
_PART_KEYS = frozenset({"type", "text", "image_url"})


def build_request(request_type: type[RequestT], request: RequestT | None, fields: Mapping[str, Any]) -> RequestT:
    """`request` itself, or a new `request_type` from `fields`; never both."""
    if request is not None:
        if fields:
            raise TypeError(f"pass a {request_type.__name__} or keyword fields, not both (got {sorted(fields)})")
        if not isinstance(request, request_type):
            raise TypeError(f"expected a {request_type.__name__}, got {type(request).__name__}")
        return request
    values = {name: value for name, value in fields.items() if value is not None}
    _ADAPTERS.get(request_type, _no_adapter)(values)
    if "extra" in values:
        if "extra_json" in values:
            raise TypeError("pass extra or extra_json, not both")
        values["extra_json"] = _json(values.pop("extra"))
    unknown = sorted(set(values) - set(request_type.DESCRIPTOR.fields_by_name))
    if unknown:
        raise TypeError(
            f"{request_type.__name__} has no field {', '.join(unknown)}; pass other fields in extra={{...}}"
        )
    return request_type(**values)


def chat_message(message: chat_pb2.ChatMessage | Mapping[str, Any]) -> chat_pb2.ChatMessage:
    """A ChatMessage from an OpenAI message dict (or the proto itself)."""
    if isinstance(message, chat_pb2.ChatMessage):
        return message
    proto = chat_pb2.ChatMessage(
        role=message.get("role", ""),
        name=message.get("name") or "",
        tool_call_id=message.get("tool_call_id") or "",
    )
    content = message.get("content")
    if isinstance(content, str):
        proto.text = content
    elif content is not None:
        proto.parts.SetInParent()  # an empty list is still a list, not null content
        proto.parts.parts.extend(content_part(part) for part in content)
    extra = {key: value for key, value in message.items() if key not in _MESSAGE_KEYS}
    if extra:
        proto.extra_json = _json(extra)
    return proto


def content_part(part: chat_pb2.ChatContentPart | Mapping[str, Any]) -> chat_pb2.ChatContentPart:
    """A ChatContentPart from an OpenAI content part dict (or the proto itself)."""
    if isinstance(part, chat_pb2.ChatContentPart):
        return part
    proto = chat_pb2.ChatContentPart(type=part.get("type", ""), text=part.get("text") or "")
    if part.get("image_url") is not None:
        proto.image_url.CopyFrom(chat_pb2.ImageUrl(**part["image_url"]))
    extra = {key: value for key, value in part.items() if key not in _PART_KEYS}
    if extra:
        proto.extra_json = _json(extra)
    return proto


def _adapt_chat(values: dict[str, Any]) -> None:
    if "messages" in values:
        values["messages"] = [chat_message(message) for message in values["messages"]]
    _text_list(values, "stop")


def _adapt_completion(values: dict[str, Any]) -> None:
    _text_or_tokens(values, "prompt", "prompt_tokens")
    _text_list(values, "stop")


def _adapt_embeddings(values: dict[str, Any]) -> None:
    _text_or_tokens(values, "input", "input_tokens")


def _no_adapter(values: dict[str, Any]) -> None:
    pass


_ADAPTERS = {
    pb.ChatCompletionRequest: _adapt_chat,
    pb.CompletionRequest: _adapt_completion,
    pb.EmbeddingsRequest: _adapt_embeddings,
}


def _text_list(values: dict[str, Any], name: str) -> None:
    if isinstance(values.get(name), str):
        values[name] = [values[name]]


def _text_or_tokens(values: dict[str, Any], text_field: str, tokens_field: str) -> None:
    """OpenAI's four shapes of prompt/input: text, texts, one token list, token lists."""
    if text_field in values:
        value = values[text_field]
        if tokens_field in values:
            raise TypeError(f"pass {text_field} or {tokens_field}, not both")
        if isinstance(value, str):
            values[text_field] = [value]
        elif _is_token_list(value):
            del values[text_field]
            values[tokens_field] = [value]
        elif value and all(_is_token_list(item) for item in value):
            del values[text_field]
            values[tokens_field] = value
    if tokens_field in values:
        values[tokens_field] = [
            item if isinstance(item, common_pb2.TokenIds) else common_pb2.TokenIds(ids=item)
            for item in values[tokens_field]
        ]


def _is_token_list(value: object) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(item, int) for item in value)
    )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
