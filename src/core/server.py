"""The routing core as a running gRPC server: wiring, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from atoma_proxy.config import Settings
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.inference import InferenceRelay
from atoma_proxy.core.nodes.health import HealthPoller
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.nodes.selection import LeastInFlightSelector
from atoma_proxy.core.nodes.transport import HttpNodeTransport, NodeTransport
from atoma_proxy.core.persistence import create_engine, session_factory
from atoma_proxy.core.routing_service import RoutingService
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

ROUTING_SERVICE = pb.DESCRIPTOR.services_by_name["RoutingService"].full_name
_MAX_MESSAGE = 64 * 1024 * 1024


class CoreServer:
    """Owns everything the core runs: database engine, node transport, poller, gRPC server."""

    def __init__(self, settings: Settings, transport: NodeTransport | None = None) -> None:
        self.settings = settings
        self.registry = NodeRegistry.from_config(settings.nodes)
        self.transport = transport or HttpNodeTransport(settings.core)
        self.engine = create_engine(settings.database)
        self._poller = HealthPoller(self.registry, self.transport, settings.core.health_interval)
        self._health = health.aio.HealthServicer()
        self._server = grpc.aio.server(
            maximum_concurrent_rpcs=settings.core.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.so_reuseport", 0),
            ],
        )
        authenticator = ApiKeyAuthenticator(session_factory(self.engine), settings.core.api_key_cache_ttl)
        relay = InferenceRelay(self.registry, LeastInFlightSelector(), self.transport)
        pb_grpc.add_RoutingServiceServicer_to_server(RoutingService(self.registry, relay, authenticator), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (ROUTING_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server,
        )
        self.port = 0

    async def start(self) -> int:
        """Bind, probe the nodes once, start serving; returns the bound port."""
        self.port = self._server.add_insecure_port(self.settings.core.listen)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.settings.core.listen}")
        await self._poller.probe_all()
        self._poller.start()
        await self._server.start()
        for service in ("", ROUTING_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("routing core listening on %s (port %d)", self.settings.core.listen, self.port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking RPCs, let in-flight ones finish within the grace period, release everything."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.settings.core.shutdown_grace if grace is None else grace)
        await self._poller.stop()
        await self.transport.aclose()
        await self.engine.dispose()

    async def wait(self) -> None:
        await self._server.wait_for_termination()


async def serve_core(settings: Settings, stop: asyncio.Event) -> None:
    server = CoreServer(settings)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
