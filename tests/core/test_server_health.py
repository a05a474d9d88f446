"""The running core has a health status for every service it serves, the ones reflection lists, and "" (the server)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atoma_proxy.config import CoreSettings, DatabaseSettings, Settings
from atoma_proxy.core.server import (
    ACCOUNT_SERVICES,
    NODE_ADMIN_SERVICE,
    NODE_REGISTRATION_SERVICE,
    ROUTING_SERVICE,
    CoreServer,
)
from tests.support.databases import temporary_database

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING


async def _listed(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request])):
        return {service.name for service in response.list_services_response.service}
    raise AssertionError("reflection did not answer")


async def test_every_service_has_a_health_status() -> None:
    async with temporary_database("sqlite") as url:
        server = CoreServer(Settings(database=DatabaseSettings(url=url), core=CoreSettings(listen="127.0.0.1:0")))
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                listed = await _listed(channel)
                expected = {ROUTING_SERVICE, *ACCOUNT_SERVICES, NODE_ADMIN_SERVICE, NODE_REGISTRATION_SERVICE, HEALTH}
                assert expected <= listed
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", *sorted(listed)):
                    response = await health.Check(health_pb2.HealthCheckRequest(service=service))
                    assert response.status == SERVING, service
        finally:
            await server.stop(0)
