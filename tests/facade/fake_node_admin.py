"""NodeAdminService (and NodeRegistrationService) in the fake core: every RPC answers its empty response.

Enough for the facade's own tests (the derived routes exist and never 5xx); the real service is
tested in tests/e2e/test_chaos.py.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2, node_registration_service_pb2

SERVICE = node_admin_service_pb2.DESCRIPTOR.services_by_name["NodeAdminService"]
REGISTRATION = node_registration_service_pb2.DESCRIPTOR.services_by_name["NodeRegistrationService"]


def _empty_answer(method: MethodDescriptor) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)

    async def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return response_class()

    return grpc.unary_unary_rpc_method_handler(
        answer, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString
    )


def add_fake_node_admin_service(server: grpc.aio.Server) -> None:
    for service in (SERVICE, REGISTRATION):
        handlers = {method.name: _empty_answer(method) for method in service.methods}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
