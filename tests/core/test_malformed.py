"""The malformed-request interceptor leaves handlers that write with `context.write` working."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from atoma_proxy.core.malformed import MalformedRequestInterceptor


async def test_health_watch_streams_through_the_interceptor() -> None:
    # grpc_health's Watch is a coroutine that writes with context.write (client-side health checks use it).
    server = grpc.aio.server(interceptors=[MalformedRequestInterceptor()])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
            first = await call.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            second = await call.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            call.cancel()
    finally:
        await server.stop(0)
