"""Request protos from OpenAI-shaped keyword fields, through the facade's own translation.

Each builder takes either a prebuilt request proto (sent as it is) or keyword fields named after
the proto's fields. The keywords are OpenAI's request, as JSON values, and go through
`atoma_proxy.wire.openai_requests`, the translation the REST facade applies to a body: a request
means the same over both paths (`messages` dicts with `content` a string, parts or None, unknown
message keys to the message's `extra_json`; `prompt`/`input` as text, texts, a token list or token
lists; `stop` a string or strings; None, like OpenAI's null, leaves a field unset). Besides those:

- `extra={...}`: any other OpenAI request fields (tools, response_format, ...); a key there wins
  over a keyword of the same name, as `extra_json` wins at the node;
- `extra_json`: the same as JSON text (one or the other);
- `prompt_tokens` / `input_tokens`: token arrays (lists or TokenIds), OpenAI's token form of
  `prompt` / `input` (one or the other);
- `messages` may hold ChatMessage protos and `content` ChatContentPart protos, copied as they are;
  `stream_options` may be a StreamOptions proto.

An unknown keyword raises TypeError rather than travel silently to the node. A value the
translation rejects (a wrong type, a missing `model`) raises InvalidRequestError with the reason
the core would give (INVALID_REQUEST, `metadata["param"]` naming the field), before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from atoma_proxy.clients._errors import InvalidRequestError
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.wire import openai_requests
from atoma_proxy.wire.json_values import OpenAIRequestError, wrong_type

__all__ = ["build_request"]

RequestT = TypeVar("RequestT", bound=Message)

_TRANSLATIONS: Mapping[type[Message], Callable[[dict[str, Any]], Message]] = {
    pb.ChatCompletionRequest: openai_requests.chat_completion_request,
    pb.CompletionRequest: openai_requests.completion_request,
    pb.EmbeddingsRequest: openai_requests.embeddings_request,
    pb.GenerateImagesRequest: openai_requests.generate_images_request,
}
# Proto fields with no OpenAI name of their own: the token form of `prompt` and `input`.
_TOKEN_FIELDS = {"prompt_tokens": "prompt", "input_tokens": "input"}


def build_request(request_type: type[RequestT], request: RequestT | None, fields: Mapping[str, Any]) -> RequestT:
    """`request` itself, or a new `request_type` translated from `fields`; never both."""
    if request is not None:
        if fields:
            raise TypeError(f"pass a {request_type.__name__} or keyword fields, not both (got {sorted(fields)})")
        if not isinstance(request, request_type):
            raise TypeError(f"expected a {request_type.__name__}, got {type(request).__name__}")
        return request
    try:
        built = _TRANSLATIONS[request_type](_openai_body(request_type, fields))
    except OpenAIRequestError as error:
        raise InvalidRequestError(
            error.message,
            code=grpc.StatusCode.INVALID_ARGUMENT,
            reason="INVALID_REQUEST",
            metadata={"param": error.param} if error.param else None,
        ) from None
    assert isinstance(built, request_type)
    return built


def _openai_body(request_type: type[Message], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI request the keyword fields spell (TypeError for a keyword that is no field)."""
    body = {name: value for name, value in fields.items() if value is not None}
    unknown = sorted(set(body) - set(request_type.DESCRIPTOR.fields_by_name) - {"extra"})
    if unknown:
        raise TypeError(
            f"{request_type.__name__} has no field {', '.join(unknown)}; pass other fields in extra={{...}}"
        )
    extra = _extra(body.pop("extra", None), body.pop("extra_json", None))
    for tokens_field, text_field in _TOKEN_FIELDS.items():
        if tokens_field in body:
            if text_field in body:
                raise TypeError(f"pass {text_field} or {tokens_field}, not both")
            body[text_field] = [_token_ids(item) for item in body.pop(tokens_field)]
    options = body.get("stream_options")
    if isinstance(options, common_pb2.StreamOptions):
        body["stream_options"] = {"include_usage": options.include_usage}
    return {**body, **extra}


def _extra(extra: Mapping[str, Any] | None, extra_json: str | None) -> Mapping[str, Any]:
    if extra is not None and extra_json is not None:
        raise TypeError("pass extra or extra_json, not both")
    if extra_json is None:
        return extra or {}
    try:
        parsed = json.loads(extra_json)  # the stdlib keeps integers beyond 64 bits exact
    except ValueError:
        parsed = None
    if type(parsed) is not dict:
        raise wrong_type("extra_json", "a JSON object")
    return parsed


def _token_ids(item: Any) -> Any:
    return list(item.ids) if isinstance(item, common_pb2.TokenIds) else item
