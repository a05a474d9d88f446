"""The OpenAI REST facade: a FastAPI app that forwards every request to the routing core.

grpc.aio channels are opened in the lifespan (a channel must be created inside the event loop
that uses it) and shared by all requests: HTTP/2 multiplexes them. One channel is one TCP
connection, which SO_REUSEPORT hands to one core worker; with `facade.core_connections` = N the
facade opens N separate connections and gives each inference call the next one, so N core workers
all serve. Message limits match the core's 64 MiB; keepalive pings only while calls are in flight,
which a default gRPC server accepts without GOAWAY(too_many_pings).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from grpc_health.v1 import health_pb2_grpc

from atoma_proxy.config import FacadeSettings, Settings
from atoma_proxy.core.telemetry import metrics, tracing
from atoma_proxy.facade import routes_confidential, routes_openai
from atoma_proxy.facade.body import MAX_BODY_BYTES
from atoma_proxy.facade.console_routes import add_console
from atoma_proxy.facade.core_targets import channel_target
from atoma_proxy.facade.cors import CorsPolicy
from atoma_proxy.facade.errors import install_error_handlers
from atoma_proxy.facade.fast_path import FacadeApp
from atoma_proxy.facade.gateway import add_gateway_routes
from atoma_proxy.facade.schemas import component_schemas
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

__all__ = ["CHANNEL_OPTIONS", "CoreStubs", "core_channels", "create_app"]

# Targets naming several cores: every address of a DNS name (`dns:///core:50051`, replicas) or a list
# (`ipv4:10.0.0.1:50051,10.0.0.2:50051`); the channel connects to each and sends calls to them in turn.
ROUND_ROBIN_SCHEMES = ("dns:", "ipv4:", "ipv6:")

_MESSAGE_LIMIT = MAX_BODY_BYTES
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
    ("grpc.max_send_message_length", _MESSAGE_LIMIT),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
)


@dataclass
class CoreStubs:
    """The channels to the core and the stubs the routes call (`app.state.core`)."""

    channels: list[grpc.aio.Channel]
    routing_stubs: list[pb_grpc.RoutingServiceStub]
    health: health_pb2_grpc.HealthStub
    accounts: accounts_grpc.AccountServiceStub
    account_admin: account_admin_grpc.AccountAdminServiceStub
    _turn: int = 0

    @property
    def channel(self) -> grpc.aio.Channel:
        return self.channels[0]

    @property
    def routing(self) -> pb_grpc.RoutingServiceStub:
        """The RoutingService stub on the next connection, in turn."""
        self._turn = (self._turn + 1) % len(self.routing_stubs)
        return self.routing_stubs[self._turn]


def core_channels(facade: FacadeSettings) -> list[grpc.aio.Channel]:
    """`facade.core_connections` gRPC channels to the core(s) of `facade.core_targets` (core_targets.py)."""
    count = facade.core_connections
    # A channel of its own subchannel pool opens its own connection instead of sharing one.
    options = CHANNEL_OPTIONS + ((("grpc.use_local_subchannel_pool", 1),) if count > 1 else ())
    several = bool(facade.core_targets) or facade.core_target.startswith(ROUND_ROBIN_SCHEMES)
    target, balancing = channel_target(facade.targets(), balanced=several)
    interceptors = tracing.client_interceptors()  # none unless tracing is on
    return [
        grpc.aio.insecure_channel(target, options=options + balancing, interceptors=interceptors) for _ in range(count)
    ]


def create_app(settings: Settings, core_channel: Callable[[], Any] | None = None) -> FastAPI:
    """The facade app for `settings.facade`; serve it with uvicorn.

    `core_channel`: opens the channel to a core in the same process (`CoreServer.local_channel`),
    used instead of gRPC connections to `facade.core_targets`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channels = [core_channel()] if core_channel is not None else core_channels(settings.facade)
        channel = channels[0]
        app.state.core = CoreStubs(
            channels,
            [pb_grpc.RoutingServiceStub(each) for each in channels],
            health_pb2_grpc.HealthStub(channel),
            accounts_grpc.AccountServiceStub(channel),
            account_admin_grpc.AccountAdminServiceStub(channel),
        )
        try:
            yield
        finally:
            for each in channels:
                await each.close()

    app = FacadeApp(
        fast_routes={
            "/v1/chat/completions": routes_openai.create_chat_completion,
            "/v1/completions": routes_openai.create_completion,
        },
        cors=CorsPolicy(settings.facade.cors_origins),
        title="atoma-proxy",
        description="OpenAI-compatible gateway to a network of inference nodes.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.max_body_bytes = MAX_BODY_BYTES
    install_error_handlers(app)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text: every worker's metrics in multiprocess mode (README "Operations")."""
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)

    app.include_router(routes_openai.router)
    app.include_router(routes_confidential.router)  # before the gateway: these shapes are Atoma's JSON
    add_console(app)
    add_gateway_routes(
        app, pb.DESCRIPTOR.services_by_name["RoutingService"], lambda request: request.app.state.core.routing
    )
    add_gateway_routes(
        app, accounts_pb.DESCRIPTOR.services_by_name["AccountService"], lambda request: request.app.state.core.accounts
    )
    add_gateway_routes(
        app,
        account_admin_pb.DESCRIPTOR.services_by_name["AccountAdminService"],
        lambda request: request.app.state.core.account_admin,
    )
    add_gateway_routes(  # admin calls are rare: a stub per call on the shared channel
        app,
        node_admin_pb.DESCRIPTOR.services_by_name["NodeAdminService"],
        lambda request: node_admin_grpc.NodeAdminServiceStub(request.app.state.core.channel),
    )
    add_gateway_routes(  # POST /v1/nodes: signed node registrations (README "Sui")
        app,
        node_registration_pb.DESCRIPTOR.services_by_name["NodeRegistrationService"],
        lambda request: node_registration_grpc.NodeRegistrationServiceStub(request.app.state.core.channel),
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
