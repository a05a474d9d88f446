"""Python client of the routing core's gRPC RoutingService.

    async with await RoutingClient.connect("127.0.0.1:50051", api_key="sk-...") as client:
        result = await client.chat_completion_create(model="m", messages=[{"role": "user", "content": "hi"}])
        print(result.data["choices"][0]["message"]["content"], result.usage, result.routing)

        async for event in client.chat_completion(model="m", messages=[...], stream=True):
            match event:
                case ChatChunk():
                    print(event.data["choices"][0]["delta"].get("content", ""), end="")
                case StreamEnd():
                    print(event.usage)

Every failure is a RoutingError; see `_errors` for the hierarchy.
"""

from atoma_proxy.clients._client import EventStream, RoutingClient
from atoma_proxy.clients._errors import (
    AuthenticationError,
    DeadlineExceededError,
    InsufficientFundsError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RequestCancelledError,
    RoutingError,
    UnavailableError,
    from_rpc_error,
)
from atoma_proxy.clients._models import (
    ChatChunk,
    ChatCompletionEvent,
    ChatCompletionResult,
    Completion,
    CompletionChunk,
    CompletionEvent,
    CompletionResult,
    EmbeddingsResult,
    ImagesResult,
    Model,
    NodeStatus,
    RoutingInfo,
    StreamEnd,
    Usage,
)

__all__ = [
    "AuthenticationError",
    "ChatChunk",
    "ChatCompletionEvent",
    "ChatCompletionResult",
    "Completion",
    "CompletionChunk",
    "CompletionEvent",
    "CompletionResult",
    "DeadlineExceededError",
    "EmbeddingsResult",
    "EventStream",
    "ImagesResult",
    "InsufficientFundsError",
    "InternalError",
    "InvalidRequestError",
    "Model",
    "NodeStatus",
    "NotFoundError",
    "RateLimitError",
    "RequestCancelledError",
    "RoutingClient",
    "RoutingError",
    "RoutingInfo",
    "StreamEnd",
    "UnavailableError",
    "Usage",
    "from_rpc_error",
]
