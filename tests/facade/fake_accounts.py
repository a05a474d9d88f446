"""The account services of the fake core: every RPC answers its empty response.

Enough for the facade's own tests (routes exist, bodies and path parameters translate, nothing 5xx);
the real services are tested in tests/core/accounts and tests/e2e/test_accounts.py.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2, account_service_pb2

SERVICES: tuple[ServiceDescriptor, ...] = (
    account_service_pb2.DESCRIPTOR.services_by_name["AccountService"],
    account_admin_service_pb2.DESCRIPTOR.services_by_name["AccountAdminService"],
)


def _empty_answer(method: MethodDescriptor) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)

    async def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return response_class()

    return grpc.unary_unary_rpc_method_handler(
        answer, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString
    )


def add_fake_account_services(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(
                service.full_name, {method.name: _empty_answer(method) for method in service.methods}
            )
            for service in SERVICES
        )
    )
