"""RoutingClient: an asyncio client of the core's RoutingService over the generated stub.

Every call takes keyword-only `timeout` (seconds; None uses the client's `default_timeout`,
`math.inf` means no deadline) and `metadata` (extra request metadata; an `authorization` entry
there replaces the client's API key for that call). Failures raise the RoutingError family of
`_errors`; cancelling the calling task cancels the RPC.
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline sent to the core, not a local wait to replace by asyncio.timeout.
from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeAlias, TypeVar

import grpc
import orjson

from atoma_proxy.clients import _responses as responses
from atoma_proxy.clients._channel import ChannelOwner, call_options, open_channel
from atoma_proxy.clients._confidential_rpcs import ConfidentialRpcs
from atoma_proxy.clients._errors import InternalError, from_rpc_error
from atoma_proxy.clients._models import (
    ChatCompletionEvent,
    ChatCompletionResult,
    Completion,
    CompletionEvent,
    CompletionResult,
    EmbeddingsResult,
    ImagesResult,
    Model,
    NodeStatus,
    ResponseEvent,
    RoutingInfo,
    StreamEnd,
)
from atoma_proxy.clients._requests import build_request
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

EventT = TypeVar("EventT")
StreamMessage: TypeAlias = pb.ChatCompletionResponse | pb.CompletionResponse


class EventStream(Generic[EventT]):
    """The typed events of one streaming call, in order; the last is a StreamEnd.

    Iterate it once with `async for`. Leaving the iteration early (break, an exception, a cancelled
    task), `aclose()` or leaving `async with` cancels the RPC, which the core passes on to the node.
    `aclose()` and `async with` cancel at once; a bare `break` cancels when the stream is garbage
    collected, which CPython does right away unless you keep a reference to it.
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall, events: AsyncGenerator[EventT, None]) -> None:
        self._call = call
        self._events = events

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> EventT:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Cancel the RPC if it is still running and release the stream."""
        self._call.cancel()
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


_QUOTED: dict[str, Any] = {
    "chat_completion": pb.ChatCompletionRequest,
    "completion": pb.CompletionRequest,
    "embeddings": pb.EmbeddingsRequest,
    "generate_images": pb.GenerateImagesRequest,
}


class RoutingClient(ConfidentialRpcs, ChannelOwner):
    """Client of the routing core. Create it with `await RoutingClient.connect(...)` and close it when done."""

    def __init__(self, channel: grpc.aio.Channel, *, api_key: str, default_timeout: float | None = 600) -> None:
        """Wrap an open channel, which the client then owns and closes; `connect()` is the usual way in."""
        self._channel = channel
        self._stub = pb_grpc.RoutingServiceStub(channel)
        self._authorization = f"Bearer {api_key}"
        self.default_timeout = default_timeout

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        api_key: str,
        tls: bool | grpc.ChannelCredentials = False,
        default_timeout: float | None = 600,
        channel_options: Sequence[tuple[str, Any]] = (),
        connect_timeout: float | None = 10,
    ) -> RoutingClient:
        """Open a channel to the core at `target` ("host:port").

        Args:
            api_key: sent as `authorization: Bearer <api_key>` on every call.
            tls: False for plaintext, True for TLS with the system roots, or explicit channel credentials.
            default_timeout: seconds allowed to each call (a whole stream included) when it gives no
                `timeout`; None for no deadline.
            channel_options: gRPC channel arguments, e.g. `[("grpc.max_receive_message_length", 64 << 20)]`.
            connect_timeout: seconds to wait for the connection before raising UnavailableError;
                None connects lazily, on the first call.
        """
        channel = await open_channel(target, tls=tls, channel_options=channel_options, connect_timeout=connect_timeout)
        return cls(channel, api_key=api_key, default_timeout=default_timeout)

    async def list_models(
        self, *, timeout: float | None = None, metadata: Mapping[str, str] | None = None
    ) -> list[Model]:
        """The models at least one node serves, sorted by id."""
        response, _ = await self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout, metadata)
        return [responses.model(model) for model in response.data]

    async def get_model(
        self, model: str, *, timeout: float | None = None, metadata: Mapping[str, str] | None = None
    ) -> Model:
        """One model with its kind, context length, nodes and prices (`raw.pricing`); NotFoundError when unserved."""
        response, _ = await self._unary(self._stub.GetModel, pb.GetModelRequest(model=model), timeout, metadata)
        return responses.model(response.model)

    async def estimate_cost(
        self,
        request: pb.EstimateCostRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **kinds: Any,
    ) -> pb.EstimateCostResponse:
        """What a request would cost, without running it. Give one of `chat_completion`, `completion`,
        `embeddings`, `generate_images`: a request message or its fields as a dict (the shapes of those methods)."""
        if request is None:
            if len(kinds) != 1 or next(iter(kinds)) not in _QUOTED:
                raise TypeError(f"estimate_cost takes exactly one of {', '.join(_QUOTED)}")
            [(name, value)] = kinds.items()
            inner = value if isinstance(value, _QUOTED[name]) else build_request(_QUOTED[name], None, dict(value))
            request = pb.EstimateCostRequest(**{name: inner})
        response, _ = await self._unary(self._stub.EstimateCost, request, timeout, metadata)
        return response

    def chat_completion(
        self,
        request: pb.ChatCompletionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> EventStream[ChatCompletionEvent]:
        """Start a chat completion; the events are ChatChunks with `stream=True`, else one Completion; then a StreamEnd.

        Pass a ChatCompletionRequest or its fields as keywords (see `_requests` for the shapes accepted).
        """
        built = build_request(pb.ChatCompletionRequest, request, fields)
        return self._stream(self._stub.ChatCompletion, built, responses.chat_events, timeout, metadata)

    async def chat_completion_create(
        self,
        request: pb.ChatCompletionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> ChatCompletionResult:
        """Run a non-streaming chat completion and return the chat.completion object with usage and routing."""
        built = build_request(pb.ChatCompletionRequest, request, fields)
        _refuse_stream(built, "chat_completion")
        stream = self._stream(self._stub.ChatCompletion, built, responses.chat_events, timeout, metadata)
        completion, end, raw, routing = await _collect(stream)
        return ChatCompletionResult(json=completion.json, usage=end.usage if end else None, routing=routing, raw=raw)

    def completion(
        self,
        request: pb.CompletionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> EventStream[CompletionEvent]:
        """Start a text completion, streamed like `chat_completion` with CompletionChunks."""
        built = build_request(pb.CompletionRequest, request, fields)
        return self._stream(self._stub.Completion, built, responses.completion_events, timeout, metadata)

    async def completion_create(
        self,
        request: pb.CompletionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> CompletionResult:
        """Run a non-streaming text completion and return the text_completion object with usage and routing."""
        built = build_request(pb.CompletionRequest, request, fields)
        _refuse_stream(built, "completion")
        stream = self._stream(self._stub.Completion, built, responses.completion_events, timeout, metadata)
        completion, end, raw, routing = await _collect(stream)
        return CompletionResult(json=completion.json, usage=end.usage if end else None, routing=routing, raw=raw)

    def create_response(
        self,
        request: pb.CreateResponseRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> EventStream[ResponseEvent | StreamEnd]:
        """Start a Responses API request; `fields` is OpenAI's request (`model`, `input`, `stream`, ...).

        The events are ResponseEvents (the stream events with `stream=True`, else the `response`
        object), then a StreamEnd."""
        built = request if request is not None else pb.CreateResponseRequest(request_json=orjson.dumps(fields).decode())
        return self._stream(self._stub.CreateResponse, built, responses.response_events, timeout, metadata)

    async def embeddings(
        self,
        request: pb.EmbeddingsRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> EmbeddingsResult:
        """Embed `input` (text, texts or token lists) and return the node's embeddings list object."""
        built = build_request(pb.EmbeddingsRequest, request, fields)
        response, response_metadata = await self._unary(self._stub.Embeddings, built, timeout, metadata)
        return responses.embeddings_result(response, response_metadata)

    async def generate_images(
        self,
        request: pb.GenerateImagesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> ImagesResult:
        """Generate images from `prompt` and return the node's images response object."""
        built = build_request(pb.GenerateImagesRequest, request, fields)
        response, response_metadata = await self._unary(self._stub.GenerateImages, built, timeout, metadata)
        return responses.images_result(response, response_metadata)

    async def list_nodes(
        self, *, timeout: float | None = None, metadata: Mapping[str, str] | None = None
    ) -> list[NodeStatus]:
        """The nodes this proxy instance knows, with health and load, sorted by id."""
        response, _ = await self._unary(self._stub.ListNodes, pb.ListNodesRequest(), timeout, metadata)
        return [responses.node_status(node) for node in response.nodes]

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
        request: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
    ) -> tuple[Any, dict[str, str]]:
        """The response and the merged initial and trailing metadata of a unary call."""
        call = method(request, **self._call_options(timeout, metadata))
        try:
            response = await call
            return response, await _response_metadata(call)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err

    def _stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable,
        request: Any,
        to_events: Callable[[Any], tuple[EventT, ...]],
        timeout: float | None,
        metadata: Mapping[str, str] | None,
    ) -> EventStream[EventT | StreamEnd]:
        call = method(request, **self._call_options(timeout, metadata))
        return EventStream(call, _stream_events(call, to_events))

    def _call_options(self, timeout: float | None, metadata: Mapping[str, str] | None) -> dict[str, Any]:
        self._check_open()
        return call_options(self._authorization, timeout, self.default_timeout, metadata)


async def _stream_events(
    call: grpc.aio.UnaryStreamCall, to_events: Callable[[StreamMessage], tuple[EventT, ...]]
) -> AsyncGenerator[EventT | StreamEnd, None]:
    held_end: StreamMessage | None = None
    try:
        async for message in call:
            if message.WhichOneof("event") == "end":
                # Held until the trailers arrive, so that they can complete its routing facts.
                held_end = message
                continue
            if held_end is not None:  # the server broke "end is last"; keep its order all the same
                yield responses.stream_end(held_end, responses.metadata_to_dict(await call.initial_metadata()))
                held_end = None
            for event in to_events(message):
                yield event
        if held_end is not None:
            yield responses.stream_end(held_end, await _response_metadata(call))
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from err
    finally:
        call.cancel()  # a no-op once the RPC has finished


async def _response_metadata(call: grpc.aio.Call) -> dict[str, str]:
    initial = responses.metadata_to_dict(await call.initial_metadata())
    return initial | responses.metadata_to_dict(await call.trailing_metadata())


async def _collect(
    stream: EventStream[Any],
) -> tuple[Completion, StreamEnd | None, tuple[Any, ...], RoutingInfo]:
    """The completion, the end, every message and the routing facts of a non-streaming response stream."""
    completion: Completion | None = None
    end: StreamEnd | None = None
    async with stream:
        async for event in stream:
            if isinstance(event, Completion) and completion is None:
                completion = event
            elif isinstance(event, StreamEnd):
                end = event
            else:
                raise InternalError(
                    f"unexpected {type(event).__name__} in a non-streaming response", code=grpc.StatusCode.INTERNAL
                )
        routing = end.routing if end else responses.routing_info(None, await _response_metadata(stream._call))
    if completion is None:
        raise InternalError("the response stream ended without a completion", code=grpc.StatusCode.INTERNAL)
    raw = tuple(event.raw for event in (completion, end) if event is not None)
    return completion, end, raw, routing


def _refuse_stream(request: pb.ChatCompletionRequest | pb.CompletionRequest, streaming_method: str) -> None:
    if request.stream:
        raise ValueError(f"stream=True needs {streaming_method}(...), which yields the chunks")
