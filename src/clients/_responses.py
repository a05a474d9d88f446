"""Response protos and call metadata turned into the dataclasses of `_models`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from atoma_proxy.clients._models import (
    ChatChunk,
    Completion,
    CompletionChunk,
    EmbeddingsResult,
    ImagesResult,
    Model,
    NodeStatus,
    ResponseEvent,
    RoutingInfo,
    StreamEnd,
    Usage,
)
from atoma_proxy.generated.atoma.routing.v1 import common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.wire.metadata import ATTEMPTS, NODE, REQUEST_ID


def metadata_to_dict(metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    """Text entries of gRPC metadata, first value of each key; binary (`-bin`) entries are left out."""
    result: dict[str, str] = {}
    for key, value in metadata:
        if isinstance(value, str):
            result.setdefault(key, value)
    return result


def routing_info(proto: common_pb2.RoutingInfo | None, metadata: Mapping[str, str]) -> RoutingInfo:
    """Routing facts from the response body, each completed from the `x-atoma-*` metadata when the body lacks it."""
    proto = proto if proto is not None else common_pb2.RoutingInfo()
    attempts: int | None = proto.attempts or None
    if attempts is None and metadata.get(ATTEMPTS, "").isdigit():
        attempts = int(metadata[ATTEMPTS])
    return RoutingInfo(
        node_id=proto.node_id or metadata.get(NODE) or None,
        attempts=attempts,
        request_id=proto.request_id or metadata.get(REQUEST_ID) or None,
    )


def usage(proto: common_pb2.Usage) -> Usage:
    return Usage(
        prompt_tokens=proto.prompt_tokens,
        completion_tokens=proto.completion_tokens,
        total_tokens=proto.total_tokens,
    )


def model(proto: pb.Model) -> Model:
    return Model(
        id=proto.id,
        object=proto.object,
        created=proto.created,
        owned_by=proto.owned_by,
        raw=proto,
        kind=proto.kind,
        context_length=proto.context_length,
        nodes=tuple(proto.nodes),
    )


def node_status(proto: pb.NodeStatus) -> NodeStatus:
    return NodeStatus(
        node_id=proto.node_id,
        models=tuple(proto.models),
        healthy=proto.healthy,
        in_flight=proto.in_flight,
        input_price_per_million=proto.input_price_per_million,
        output_price_per_million=proto.output_price_per_million,
        raw=proto,
    )


def stream_end(message: pb.ChatCompletionResponse | pb.CompletionResponse, metadata: Mapping[str, str]) -> StreamEnd:
    end = message.end
    return StreamEnd(
        usage=usage(end.usage) if end.HasField("usage") else None,
        routing=routing_info(end.routing if end.HasField("routing") else None, metadata),
        raw=message,
    )


def chat_events(message: pb.ChatCompletionResponse) -> tuple[ChatChunk | Completion, ...]:
    """The chunks or the completion of a ChatCompletion message; none for `end` (see `stream_end`)."""
    kind = message.WhichOneof("event")
    if kind == "chunk":
        return (ChatChunk(json=message.chunk, raw=message),)
    if kind == "chunks":
        return tuple(ChatChunk(json=chunk, raw=message) for chunk in message.chunks.chunks)
    if kind == "completion":
        return (Completion(json=message.completion, raw=message),)
    return ()


def response_events(message: pb.CreateResponseResponse) -> tuple[ResponseEvent, ...]:
    """The stream event or the response object of a CreateResponse message; none for `end`."""
    kind = message.WhichOneof("event")
    if kind == "stream_event":
        return (ResponseEvent(json=message.stream_event, raw=message),)
    if kind == "response":
        return (ResponseEvent(json=message.response, raw=message),)
    return ()


def completion_events(message: pb.CompletionResponse) -> tuple[CompletionChunk | Completion, ...]:
    """The chunks or the completion of a Completion message; none for `end` (see `stream_end`)."""
    kind = message.WhichOneof("event")
    if kind == "chunk":
        return (CompletionChunk(json=message.chunk, raw=message),)
    if kind == "chunks":
        return tuple(CompletionChunk(json=chunk, raw=message) for chunk in message.chunks.chunks)
    if kind == "completion":
        return (Completion(json=message.completion, raw=message),)
    return ()


def embeddings_result(proto: pb.EmbeddingsResponse, metadata: Mapping[str, str]) -> EmbeddingsResult:
    return EmbeddingsResult(
        json=proto.response_json,
        usage=usage(proto.usage) if proto.HasField("usage") else None,
        routing=routing_info(proto.routing if proto.HasField("routing") else None, metadata),
        raw=proto,
    )


def images_result(proto: pb.GenerateImagesResponse, metadata: Mapping[str, str]) -> ImagesResult:
    return ImagesResult(
        json=proto.response_json,
        routing=routing_info(proto.routing if proto.HasField("routing") else None, metadata),
        raw=proto,
    )
