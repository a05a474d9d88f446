"""The routing core as a running gRPC server: wiring, health, reflection, graceful shutdown."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from atoma_proxy.config import Settings, load_settings
from atoma_proxy.core.accounts import build_account_services
from atoma_proxy.core.accounts.callers import AdminGate
from atoma_proxy.core.accounts.throttle import auth_throttle_from_settings
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.catalog import ModelCatalog
from atoma_proxy.core.confidential.service import RoutingWithConfidential, build_confidential_service
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.ledger import LedgerSweeper, Meter
from atoma_proxy.core.local_channel import LocalChannel, LocalServer
from atoma_proxy.core.malformed import MalformedRequestInterceptor
from atoma_proxy.core.node_admin_service import NodeAdminService
from atoma_proxy.core.nodes.runtime import NodeRuntime
from atoma_proxy.core.nodes.transport import NodeTransport
from atoma_proxy.core.persistence import create_engine, session_factory
from atoma_proxy.core.pipeline.relay import InferenceRelay
from atoma_proxy.core.pipeline.stages import Stages
from atoma_proxy.core.ratelimit import rate_limiter_from_settings
from atoma_proxy.core.reflection import enable_reflection
from atoma_proxy.core.routing_service import RoutingService
from atoma_proxy.core.sui.atoma_transport import build_node_transport
from atoma_proxy.core.sui.runtime import SuiRuntime
from atoma_proxy.core.telemetry import metrics, tracing
from atoma_proxy.core.telemetry.http_server import MetricsServer
from atoma_proxy.core.telemetry.node_metrics import node_collector
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as account_admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as account_admin_grpc
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as accounts_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as accounts_grpc
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as node_admin_pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as node_admin_grpc
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2 as node_registration_pb
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2_grpc as node_registration_grpc
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

__all__ = [
    "ACCOUNT_SERVICES",
    "NODE_ADMIN_SERVICE",
    "NODE_REGISTRATION_SERVICE",
    "ROUTING_SERVICE",
    "CoreServer",
]

log = logging.getLogger(__name__)

ROUTING_SERVICE = pb.DESCRIPTOR.services_by_name["RoutingService"].full_name
NODE_ADMIN_SERVICE = node_admin_pb.DESCRIPTOR.services_by_name["NodeAdminService"].full_name
NODE_REGISTRATION_SERVICE = node_registration_pb.DESCRIPTOR.services_by_name["NodeRegistrationService"].full_name
ACCOUNT_SERVICES = (
    accounts_pb.DESCRIPTOR.services_by_name["AccountService"].full_name,
    account_admin_pb.DESCRIPTOR.services_by_name["AccountAdminService"].full_name,
)
_MAX_MESSAGE = 64 * 1024 * 1024


class CoreServer:
    """Owns everything the core runs: database engine, node transport, poller, gRPC server."""

    def __init__(self, settings: Settings, transport: NodeTransport | None = None, *, reuse_port: bool = False) -> None:
        """`reuse_port`: other processes may listen on the same address (the workers of `core`)."""
        self.settings = settings
        self.transport = transport or build_node_transport(settings)
        # Registry, health, metrics, selection; SIGHUP reloads the nodes of the configuration as it reads then.
        self.nodes = NodeRuntime(settings, self.transport, load_nodes=lambda: load_settings().nodes)
        self.registry = self.nodes.registry
        self.engine = create_engine(settings.database)
        self._health = health.aio.HealthServicer()
        # Every session of the serving path gives up on a hung database (README "Outages").
        sessions = session_factory(self.engine, timeout=settings.database.statement_timeout)
        self._api_keys = authenticator = ApiKeyAuthenticator(
            sessions, settings.core.api_key_cache_ttl, timeout=settings.database.statement_timeout
        )
        # Outermost first: a request that is not valid protobuf is refused before anything else runs.
        # Tracing (when on) outermost of all, so every RPC has its span. The error edge innermost: what a
        # servicer raises ends its RPC (error_edge.py) before any interceptor around it sees the outcome.
        interceptors: list[grpc.aio.ServerInterceptor] = [
            *tracing.server_interceptors(),
            MalformedRequestInterceptor(),
            ErrorEdgeInterceptor(),
        ]
        self._server = grpc.aio.server(
            interceptors=interceptors,
            maximum_concurrent_rpcs=settings.core.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.so_reuseport", int(reuse_port)),
                # Clients reconnect now and then (GOAWAY; calls in flight finish): a `dns:///` target then
                # re-resolves and finds new core replicas, and SO_REUSEPORT spreads connections afresh.
                *(
                    (("grpc.max_connection_age_ms", int(settings.core.max_connection_age * 1000)),)
                    if settings.core.max_connection_age > 0
                    else ()
                ),
            ],
        )
        # The same services and interceptors, callable in-process by a facade in this process.
        self.local = LocalServer(interceptors)
        registered = self.local.recording(self._server)
        relay = InferenceRelay(
            self.registry,
            self.nodes.selector,
            self.transport,
            policy=self.nodes.failover,
            on_unreachable=self.nodes.poller.unreachable,
        )
        self.meter = Meter.from_settings(settings, self.engine, self.registry)
        # The stages of every inference request around the relay (README "Architecture").
        limiter = rate_limiter_from_settings(settings.rate_limits)  # None when no limit is configured
        self.stages = Stages(authenticator, self.meter.estimator, limiter=limiter, meter=self.meter)
        self._sweeper = LedgerSweeper(sessions, settings.ledger.sweep_interval)
        catalog = ModelCatalog(self.registry, settings.models, settings.nodes, self.meter.image_price)
        routing = RoutingService(self.registry, relay, self.stages, catalog)
        self.confidential = build_confidential_service(
            settings, self.registry, self.nodes.selector, authenticator, self.meter, self.engine, self.stages
        )
        pb_grpc.add_RoutingServiceServicer_to_server(RoutingWithConfidential(routing, self.confidential), registered)
        self.sui = SuiRuntime(settings.sui, sessions, self.registry)  # README "Sui"
        node_registration_grpc.add_NodeRegistrationServiceServicer_to_server(self.sui.registration, registered)
        self._auth_throttle = auth_throttle_from_settings(settings.accounts, settings.rate_limits)
        account_service, account_admin_service = build_account_services(
            settings.accounts,
            sessions,
            authenticator,
            self.registry,
            image_models=settings.ledger.image_models,
            throttle=self._auth_throttle,
            sui=self.sui.accounts,
        )
        accounts_grpc.add_AccountServiceServicer_to_server(account_service, registered)
        account_admin_grpc.add_AccountAdminServiceServicer_to_server(account_admin_service, registered)
        admin_token = settings.accounts.admin_token.get_secret_value() if settings.accounts.admin_token else None
        node_admin = NodeAdminService(
            self.registry,
            self.nodes.poller,
            AdminGate(admin_token),
            self.nodes.clock,
            self.confidential.keys,
            price_weight=self.nodes.selector.price_weight,
        )
        node_admin_grpc.add_NodeAdminServiceServicer_to_server(node_admin, registered)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, registered)
        # Reflection lists, and health has a status for, every service registered above (Health too) and reflection.
        self._services = enable_reflection(self.local.service_names(), self._server)
        self.port = 0
        nodes = node_collector(self.registry, settings.routing.price_weight, self.nodes.clock)
        self.metrics = (
            MetricsServer(settings.core.metrics_listen, lambda: metrics.exposition(nodes), reuse_port=reuse_port)
            if settings.core.metrics_listen
            else None
        )

    def local_channel(self) -> LocalChannel:
        """A channel to this core's services without the network (src/core/local_channel.py)."""
        return self.local.channel()

    async def start(self) -> int:
        """Bind, probe the nodes once, start serving; returns the bound port."""
        self.port = self._server.add_insecure_port(self.settings.core.listen)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.settings.core.listen}")
        await self.nodes.start()
        await self.sui.start()
        self.nodes.reload_on_sighup()
        if self.settings.ledger.enabled:
            self._sweeper.start()
        self.confidential.start()
        await self._server.start()
        if self.metrics is not None:
            await self.metrics.start()
        for service in ("", *self._services):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("routing core listening on %s (port %d)", self.settings.core.listen, self.port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking RPCs, let in-flight ones finish within the grace period, release everything."""
        await self._health.enter_graceful_shutdown()
        if self.metrics is not None:
            await self.metrics.stop()
        await self._server.stop(self.settings.core.shutdown_grace if grace is None else grace)
        await self.confidential.aclose()  # unused locks released before the meter closes
        await self.meter.aclose()  # settlements of the requests just cancelled, then its connections
        await self._sweeper.stop()
        await self.sui.stop()
        await self.stages.aclose()  # rate-limit corrections under way, then the limiter
        await self._auth_throttle.aclose()
        await self.nodes.stop()
        await self.transport.aclose()
        await self._api_keys.aclose()
        await self.engine.dispose()
