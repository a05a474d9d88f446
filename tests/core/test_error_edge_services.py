"""A domain error ends an RPC the same way on every service of the core: one RPC of each, in a running core.

Each case names the ProxyError the RPC must end with; the caller must see exactly the status that error
maps to (code, message, ErrorInfo reason, domain and metadata), over gRPC and over the in-process channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from atoma_proxy.core.errors import InvalidRequest, NotFound, PermissionDenied, ProxyError, Unauthenticated
from atoma_proxy.core.server import CoreServer
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as admin_grpc
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as accounts_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as accounts_grpc
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as node_admin_pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as node_admin_grpc
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2 as registration_pb
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2_grpc as registration_grpc
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as routing_pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as routing_grpc
from atoma_proxy.wire.status import decode_status
from tests.support.cores import in_process_core

ADMIN_TOKEN = "error-edge-admin-token"
ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
WRONG_ADMIN = (("authorization", "Bearer not-the-admin-token"),)
NO_CREDENTIALS = Unauthenticated(
    "Send `authorization: Bearer <access token or API key>`.", reason="MISSING_CREDENTIALS"
)


@dataclass(frozen=True)
class Case:
    stub: Callable[[Any], Any]
    rpc: str
    request: Any
    metadata: tuple[tuple[str, str], ...]
    error: ProxyError


CASES = {
    "NodeAdminService.DrainNode: unknown node": Case(
        node_admin_grpc.NodeAdminServiceStub,
        "DrainNode",
        node_admin_pb.DrainNodeRequest(node_id="ghost"),
        ADMIN,
        NotFound("No node `ghost` in the registry.", reason="NODE_NOT_FOUND", metadata={"param": "node_id"}),
    ),
    "NodeAdminService.ListNodeStates: no credentials": Case(
        node_admin_grpc.NodeAdminServiceStub,
        "ListNodeStates",
        node_admin_pb.ListNodeStatesRequest(),
        (),
        NO_CREDENTIALS,
    ),
    "NodeAdminService.AddNode: wrong admin token": Case(
        node_admin_grpc.NodeAdminServiceStub,
        "AddNode",
        node_admin_pb.AddNodeRequest(node_id="n"),
        WRONG_ADMIN,
        PermissionDenied("This call needs the admin token."),
    ),
    "AccountService.Register: invalid email": Case(
        accounts_grpc.AccountServiceStub,
        "Register",
        accounts_pb.RegisterRequest(email="not-an-email", password="correct horse battery"),
        (),
        InvalidRequest("`email` must be an email address.", param="email"),
    ),
    "AccountService.GetProfile: no credentials": Case(
        accounts_grpc.AccountServiceStub, "GetProfile", accounts_pb.GetProfileRequest(), (), NO_CREDENTIALS
    ),
    "AccountAdminService.GetUserBalance: unknown user": Case(
        admin_grpc.AccountAdminServiceStub,
        "GetUserBalance",
        admin_pb.GetUserBalanceRequest(user_id=999),
        ADMIN,
        NotFound("No user with id 999.", reason="USER_NOT_FOUND"),
    ),
    "AccountAdminService.GetUsageStats: invalid bucket width": Case(
        admin_grpc.AccountAdminServiceStub,
        "GetUsageStats",
        admin_pb.GetUsageStatsRequest(bucket_width=99),  # no such UsageBucketWidth
        ADMIN,
        InvalidRequest("`bucket_width` must be HOUR or DAY.", param="bucket_width"),
    ),
    "NodeRegistrationService.RegisterNode: no data": Case(
        registration_grpc.NodeRegistrationServiceStub,
        "RegisterNode",
        registration_pb.RegisterNodeRequest(),
        (),
        InvalidRequest("`data` is required.", param="data"),
    ),
    "RoutingService.ListModels: no API key": Case(
        routing_grpc.RoutingServiceStub,
        "ListModels",
        routing_pb.ListModelsRequest(),
        (),
        Unauthenticated(
            "No API key: send `Authorization: Bearer <API key>` (gRPC metadata `authorization`).",
            reason="MISSING_API_KEY",
        ),
    ),
}


@pytest.fixture(scope="module")
async def core() -> AsyncIterator[CoreServer]:
    async with in_process_core(admin_token=ADMIN_TOKEN, jwt_secret="j" * 32) as server:
        yield server


@pytest.fixture(params=["grpc", "in-process"])
async def channel(request: pytest.FixtureRequest, core: CoreServer) -> AsyncIterator[Any]:
    channel: Any = (
        grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") if request.param == "grpc" else core.local_channel()
    )
    try:
        yield channel
    finally:
        await channel.close()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_domain_error_ends_the_rpc_with_its_status(channel: Any, case: Case) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(case.stub(channel), case.rpc)(case.request, metadata=case.metadata, timeout=30)

    error, expected = caught.value, to_grpc_status(case.error)
    assert (error.code(), error.details()) == (expected.code, expected.details)
    got, want = decode_status(error.trailing_metadata()), decode_status(expected.trailing_metadata)
    assert got is not None and want is not None
    assert (got.message, got.reason, got.domain, dict(got.metadata)) == (
        want.message,
        want.reason,
        want.domain,
        dict(want.metadata),
    )
    assert got.status == want.status
