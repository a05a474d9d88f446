"""The client's public surface is deliberate, and it wraps every RPC of the service."""

import inspect
import re

import pytest

import atoma_proxy.clients
from atoma_proxy.clients import RoutingClient
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["RoutingService"]
# Enough for the fake core to answer each RPC; also proves each method is callable as documented.
MINIMAL_CALLS = {
    "ListModels": {},
    "ChatCompletion": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "Completion": {"model": "m", "prompt": "hi"},
    "Embeddings": {"model": "m", "input": "hi"},
    "GenerateImages": {"model": "m", "prompt": "a cat"},
    "ListNodes": {},
    "GetModel": {"model": "atoma/sim-chat"},
    "EstimateCost": {"chat_completion": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}},
    "LockNode": {"model": "m"},
    "ConfidentialChatCompletion": {"envelope": cpb.ConfidentialEnvelope()},
    "ConfidentialCompletion": {"envelope": cpb.ConfidentialEnvelope()},
    "ConfidentialEmbeddings": {"envelope": cpb.ConfidentialEnvelope()},
    "ConfidentialGenerateImages": {"envelope": cpb.ConfidentialEnvelope()},
    "RegisterNodeKey": {
        "node_id": "n",
        "rotation_counter": 1,
        "rotation_nonce": 1,
        "public_key": b"",
        "evidence": b"",
        "signature": b"",
    },
    "GetNodeAttestation": {"node_id": "n"},
    "CreateResponse": {"model": "m", "input": "hi"},
}


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_public_exports_are_deliberate():
    assert atoma_proxy.clients.__all__ == [
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
    assert all(hasattr(atoma_proxy.clients, name) for name in atoma_proxy.clients.__all__)


def test_the_rpc_table_here_lists_every_rpc():
    assert set(MINIMAL_CALLS) == set(SERVICE.methods_by_name)


@pytest.mark.parametrize("rpc", [method.name for method in SERVICE.methods])
def test_every_rpc_has_a_method_with_timeout_and_metadata(rpc):
    method = getattr(RoutingClient, _snake_case(rpc), None)

    assert callable(method), f"RoutingClient does not wrap {rpc}"
    parameters = inspect.signature(method).parameters
    for option in ("timeout", "metadata"):
        assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("rpc", [method.name for method in SERVICE.methods])
async def test_every_rpc_method_calls_its_rpc(client, core, rpc):
    result = getattr(client, _snake_case(rpc))(**MINIMAL_CALLS[rpc], timeout=60, metadata={"x-probe": rpc})
    if inspect.isawaitable(result):
        await result
    else:
        async for _ in result:
            pass

    assert [(call.method, call.metadata["x-probe"]) for call in core.calls] == [(rpc, rpc)]
