"""What a RoutingClient returns: frozen dataclasses over the response protos.

Results and stream events keep the proto they came from in `raw`, so a field the proto gains before
this module does is still reachable. Node payloads stay JSON text exactly as the node sent it
(`json`); `data` parses it with orjson on first access and caches the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb


@dataclass(frozen=True)
class Usage:
    """Token usage of one request, as the serving node reported it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class RoutingInfo:
    """Where and how the proxy served a request; a field is None when the server did not say."""

    node_id: str | None = None
    attempts: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Model:
    """A model the network serves (OpenAI's model object)."""

    id: str
    object: str
    created: int
    owned_by: str
    raw: pb.Model
    kind: str = ""  # "chat", "embeddings", "images"; "" when not configured
    context_length: int = 0  # 0 when unknown
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeStatus:
    """What the proxy instance knows of one node."""

    node_id: str
    models: tuple[str, ...]
    healthy: bool
    in_flight: int
    input_price_per_million: int
    output_price_per_million: int
    raw: pb.NodeStatus


@dataclass(frozen=True)
class _JsonPayload:
    json: str

    @cached_property
    def data(self) -> Any:
        """`json` parsed; parsed once, on first access."""
        return orjson.loads(self.json)


@dataclass(frozen=True)
class ChatChunk(_JsonPayload):
    """One chat.completion.chunk of a streamed chat completion."""

    raw: pb.ChatCompletionResponse


@dataclass(frozen=True)
class CompletionChunk(_JsonPayload):
    """One text_completion chunk of a streamed text completion."""

    raw: pb.CompletionResponse


@dataclass(frozen=True)
class Completion(_JsonPayload):
    """The whole response object of a non-streaming request (chat.completion or text_completion)."""

    raw: pb.ChatCompletionResponse | pb.CompletionResponse


@dataclass(frozen=True)
class ResponseEvent(_JsonPayload):
    """One Responses API stream event (`data["type"]`: `response.output_text.delta`, ...), or the whole
    `response` object of a non-streaming CreateResponse."""

    raw: pb.CreateResponseResponse


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a stream: usage (None when the node reported none) and routing facts."""

    usage: Usage | None
    routing: RoutingInfo
    raw: pb.ChatCompletionResponse | pb.CompletionResponse


ChatCompletionEvent = ChatChunk | Completion | StreamEnd
CompletionEvent = CompletionChunk | Completion | StreamEnd


@dataclass(frozen=True)
class ChatCompletionResult(_JsonPayload):
    """A non-streaming chat completion: the chat.completion object with usage and routing."""

    usage: Usage | None
    routing: RoutingInfo
    raw: tuple[pb.ChatCompletionResponse, ...]
    """Every message of the response stream, in order."""


@dataclass(frozen=True)
class CompletionResult(_JsonPayload):
    """A non-streaming text completion: the text_completion object with usage and routing."""

    usage: Usage | None
    routing: RoutingInfo
    raw: tuple[pb.CompletionResponse, ...]
    """Every message of the response stream, in order."""


@dataclass(frozen=True)
class EmbeddingsResult(_JsonPayload):
    """The node's embeddings list object with usage and routing."""

    usage: Usage | None
    routing: RoutingInfo
    raw: pb.EmbeddingsResponse


@dataclass(frozen=True)
class ImagesResult(_JsonPayload):
    """The node's images response object with routing."""

    routing: RoutingInfo
    raw: pb.GenerateImagesResponse
