"""Routes derived from google.api.http options: ListNodes on the facade, and any other service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from atoma_proxy.config import FacadeSettings, Settings
from atoma_proxy.facade import create_app
from atoma_proxy.facade.gateway import add_gateway_routes
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from tests.facade.conftest import RunningFacade
from tests.facade.fake_core import FakeCore, rich_status

F = descriptor_pb2.FieldDescriptorProto


async def test_list_nodes_is_derived_from_its_http_rule(facade: RunningFacade, core: FakeCore) -> None:
    core.script.nodes = [pb.NodeStatus(node_id="a", models=["m1"], healthy=True, input_price_per_million=5)]
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.get("/v1/routing/nodes", headers={"authorization": "Bearer k"})

    assert response.status_code == 200
    assert response.json() == {
        "nodes": [
            {
                "node_id": "a",
                "models": ["m1"],
                "healthy": True,
                "in_flight": 0,
                "input_price_per_million": "5",
                "output_price_per_million": "0",  # proto JSON prints int64 as strings
            }
        ]
    }
    assert response.headers["x-atoma-node"] == "node-a"
    assert core.metadata[0]["authorization"] == "Bearer k"
    assert isinstance(core.requests[0], pb.ListNodesRequest)


def test_only_methods_without_a_hand_written_route_are_derived() -> None:
    from fastapi import FastAPI

    from atoma_proxy.facade import routes_confidential, routes_openai

    app = FastAPI()
    app.include_router(routes_openai.router)
    app.include_router(routes_confidential.router)
    added = add_gateway_routes(app, pb.DESCRIPTOR.services_by_name["RoutingService"], lambda request: None)

    # Only RPCs whose REST form is proto JSON declare a rule; the OpenAI and confidential ones have their
    # hand-written routes and no rule (test_http_rules.py).
    assert added == ["GET /v1/routing/nodes", "POST /v1/nodes/keys", "GET /v1/nodes/{node_id}/attestation"]


async def test_derived_route_errors_use_the_envelope(facade: RunningFacade, core: FakeCore) -> None:
    core.script.error = rich_status(grpc.StatusCode.PERMISSION_DENIED, "admins only", "NOT_ADMIN")
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.get("/v1/routing/nodes")

    assert response.status_code == 403
    assert response.json()["error"] == {
        "message": "admins only",
        "type": "permission_error",
        "param": None,
        "code": "not_admin",
    }


def _echo_service() -> ServiceDescriptor:
    """A service built at runtime, as later account/admin services would be: any descriptor works."""
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/facade/echo.proto",
        package="tests.echo",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    inner = file.message_type.add(name="Filter")
    inner.field.add(name="kind", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, json_name="kind")
    request = file.message_type.add(name="EchoRequest")
    for number, (name, kind, label) in enumerate(
        [
            ("name", F.TYPE_STRING, F.LABEL_OPTIONAL),
            ("count", F.TYPE_INT32, F.LABEL_OPTIONAL),
            ("flag", F.TYPE_BOOL, F.LABEL_OPTIONAL),
            ("tags", F.TYPE_STRING, F.LABEL_REPEATED),
            ("big", F.TYPE_INT64, F.LABEL_OPTIONAL),
        ],
        start=1,
    ):
        request.field.add(name=name, number=number, type=kind, label=label, json_name=name)
    request.field.add(
        name="filter",
        number=6,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".tests.echo.Filter",
        json_name="filter",
    )
    reply = file.message_type.add(name="EchoReply")
    reply.field.add(
        name="echo",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".tests.echo.EchoRequest",
        json_name="echo",
    )
    service = file.service.add(name="EchoService")
    for name, verb, path, body, streaming in [
        ("Get", "get", "/v1/echo/{name}", "", False),
        ("Create", "post", "/v1/echo", "*", False),
        ("Watch", "get", "/v1/echo-watch", "", True),
        ("Shadowed", "get", "/v1/models", "", False),
    ]:
        method = service.method.add(
            name=name,
            input_type=".tests.echo.EchoRequest",
            output_type=".tests.echo.EchoReply",
            server_streaming=streaming,
        )
        rule = method.options.Extensions[annotations_pb2.http]
        setattr(rule, verb, path)
        rule.body = body
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName("tests.echo.EchoService")
    except KeyError:
        pool.Add(file)
        return pool.FindServiceByName("tests.echo.EchoService")


class EchoStub:
    def __init__(self, channel: grpc.aio.Channel, service: ServiceDescriptor) -> None:
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)
            reply = message_factory.GetMessageClass(method.output_type)
            setattr(
                self,
                method.name,
                channel.unary_unary(f"/{service.full_name}/{method.name}", request.SerializeToString, reply.FromString),
            )


@pytest_asyncio.fixture
async def echo_http() -> AsyncIterator[httpx.AsyncClient]:
    service = _echo_service()
    reply_class = message_factory.GetMessageClass(service.methods_by_name["Get"].output_type)

    async def echo(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.send_initial_metadata((("x-request-id", "echo-1"),))
        if request.name == "fail":
            await context.abort_with_status(
                rich_status(grpc.StatusCode.NOT_FOUND, "no such thing", "THING_NOT_FOUND", {"param": "name"})
            )
        return reply_class(echo=request)

    request_class = message_factory.GetMessageClass(service.methods_by_name["Get"].input_type)
    handler = grpc.unary_unary_rpc_method_handler(echo, request_class.FromString, reply_class.SerializeToString)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service.full_name, {"Get": handler, "Create": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = create_app(Settings(facade=FacadeSettings(request_timeout=5.0)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = EchoStub(channel, service)
        added = add_gateway_routes(app, service, lambda request: stub)
        assert added == ["GET /v1/echo/{name}", "POST /v1/echo"]  # no streaming method, no shadowing
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade") as http:
            yield http
    await server.stop(None)


async def test_path_and_query_parameters_fill_the_request(echo_http: httpx.AsyncClient) -> None:
    response = await echo_http.get(
        "/v1/echo/abc",
        params=[
            ("count", "3"),
            ("flag", "true"),
            ("tags", "x"),
            ("tags", "y"),
            ("big", "9007199254740993"),
            ("filter.kind", "k"),
        ],
    )

    assert response.status_code == 200
    assert response.json() == {
        "echo": {
            "name": "abc",
            "count": 3,
            "flag": True,
            "tags": ["x", "y"],
            "big": "9007199254740993",
            "filter": {"kind": "k"},
        }
    }
    assert response.headers["x-request-id"] == "echo-1"


async def test_body_star_is_the_json_body(echo_http: httpx.AsyncClient) -> None:
    response = await echo_http.post("/v1/echo", json={"name": "n", "tags": ["t"]})

    assert response.status_code == 200
    assert response.json()["echo"] == {"name": "n", "count": 0, "flag": False, "tags": ["t"], "big": "0"}


@pytest.mark.parametrize(
    ("method", "url", "body", "param"),
    [
        ("GET", "/v1/echo/a?count=many", None, "count"),
        ("GET", "/v1/echo/a?count=99999999999", None, "count"),
        ("GET", "/v1/echo/a?flag=maybe", None, "flag"),
        ("GET", "/v1/echo/a?nope=1", None, "nope"),
        ("GET", "/v1/echo/a?filter=1", None, "filter"),
        ("POST", "/v1/echo", {"nope": 1}, "nope"),
        ("POST", "/v1/echo", {"count": "x"}, "count"),
    ],
)
async def test_bad_parameters_are_400(
    echo_http: httpx.AsyncClient, method: str, url: str, body: Any, param: str | None
) -> None:
    response = await echo_http.request(method, url, json=body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param


async def test_service_errors_are_mapped(echo_http: httpx.AsyncClient) -> None:
    response = await echo_http.get("/v1/echo/fail")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "no such thing",
        "type": "invalid_request_error",
        "param": "name",
        "code": "thing_not_found",
    }
