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

AccountClient is the client of the account services (sign-up, login, API keys, balance, usage, stacks, and
the admin calls); see `_accounts`. NodeAdminClient changes a core's node registry at runtime (add, drain,
remove, list with routing state); see `_node_admin`.

AsyncConfidentialClient and ConfidentialClient make the same calls encrypted end to end, over REST or gRPC
(docs/confidential.md); see `_confidential`.

Every failure is a RoutingError (ConfidentialError for the confidential clients); see `_errors` for the hierarchy.
"""

from atoma_proxy.clients._account_models import (
    ApiKey,
    Balance,
    CreatedApiKey,
    CreditResult,
    ModelPrice,
    Stack,
    TokenGrant,
    UsageBucket,
    UsagePage,
    UsageRecord,
    UsageStats,
    UsageSummary,
    UsageTotals,
    UsdcDeposit,
    User,
    UserSpend,
    WalletChallenge,
)
from atoma_proxy.clients._accounts import AccountClient
from atoma_proxy.clients._client import EventStream, RoutingClient
from atoma_proxy.clients._confidential import (
    AsyncConfidentialClient,
    ConfidentialClient,
    ConfidentialError,
    ConfidentialResult,
)
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
    ResponseEvent,
    RoutingInfo,
    StreamEnd,
    Usage,
)
from atoma_proxy.clients._node_admin import NodeAdminClient
from atoma_proxy.clients._node_admin_models import NodeModelState, NodeState

__all__ = [
    "AccountClient",
    "ApiKey",
    "AsyncConfidentialClient",
    "AuthenticationError",
    "Balance",
    "ChatChunk",
    "ChatCompletionEvent",
    "ChatCompletionResult",
    "Completion",
    "CompletionChunk",
    "CompletionEvent",
    "CompletionResult",
    "ConfidentialClient",
    "ConfidentialError",
    "ConfidentialResult",
    "CreatedApiKey",
    "CreditResult",
    "DeadlineExceededError",
    "EmbeddingsResult",
    "EventStream",
    "ImagesResult",
    "InsufficientFundsError",
    "InternalError",
    "InvalidRequestError",
    "Model",
    "ModelPrice",
    "NodeAdminClient",
    "NodeModelState",
    "NodeState",
    "NodeStatus",
    "NotFoundError",
    "RateLimitError",
    "RequestCancelledError",
    "ResponseEvent",
    "RoutingClient",
    "RoutingError",
    "RoutingInfo",
    "Stack",
    "StreamEnd",
    "TokenGrant",
    "UnavailableError",
    "Usage",
    "UsageBucket",
    "UsagePage",
    "UsageRecord",
    "UsageStats",
    "UsageSummary",
    "UsageTotals",
    "UsdcDeposit",
    "User",
    "UserSpend",
    "WalletChallenge",
    "from_rpc_error",
]
