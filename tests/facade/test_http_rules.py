"""The protos' `google.api.http` rules tell the truth: the facade serves each one as proto JSON.

A rule declares that `VERB path` takes the request message as proto3 JSON (the `body` field, or
path and query parameters) and answers with the response message as proto3 JSON: what the facade's
grpc-gateway-style bridge (`gateway.py`) derives, and what grpc-gateway or an OpenAPI generator run
on the protos would produce. The OpenAI routes (OpenAI's JSON) and the confidential ones (Atoma's
JSON) are hand-written, so no rule may name them: a rule there would describe a body nobody serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from google.protobuf.descriptor import MethodDescriptor
from starlette.routing import Match, Route

from atoma_proxy.config import FacadeSettings, Settings
from atoma_proxy.facade import create_app, routes_confidential, routes_openai
from atoma_proxy.facade.gateway import fastapi_path, http_rules
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2, account_service_pb2
from atoma_proxy.generated.atoma.routing.v1 import (
    node_admin_service_pb2,
    node_registration_service_pb2,
    routing_service_pb2,
)

# Every service the facade bridges (app.py), which is every service of the protos.
FILES = [
    routing_service_pb2,
    account_service_pb2,
    account_admin_service_pb2,
    node_admin_service_pb2,
    node_registration_service_pb2,
]
RULES = [
    (method, verb, template, body)
    for file in FILES
    for service in file.DESCRIPTOR.services_by_name.values()
    for method in service.methods
    for verb, template, body in http_rules(method)
]
RULE_IDS = [f"{method.name} {verb} {template}" for method, verb, template, _ in RULES]
HAND_WRITTEN = [
    (verb, route.path)
    for router in (routes_openai.router, routes_confidential.router)
    for route in router.routes
    if isinstance(route, APIRoute)
    for verb in sorted(route.methods)
]


def _probe(verb: str, path: str) -> dict[str, Any]:
    """An ASGI scope of a request for `path`, its `{variables}` filled with "1"."""
    concrete = re.sub(r"\{[^}]+\}", "1", path)
    return {"type": "http", "method": verb, "path": concrete, "root_path": "", "headers": []}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The facade's routes (no lifespan: nothing here reaches the core)."""
    return create_app(Settings(facade=FacadeSettings(request_timeout=5.0)))


def _served_by(app: FastAPI, verb: str, template: str) -> Iterator[Any]:
    probe = _probe(verb, fastapi_path(template)[0])
    return (route for route in app.router.routes if route.matches(probe)[0] is Match.FULL)


def test_the_protos_declare_rules() -> None:
    # The bridge's own RPCs are declared (not everything went), and no file escaped the list above.
    assert {"ListNodes", "GetNodeAttestation", "Register", "AddNode", "CreditBalance"} <= {m.name for m, *_ in RULES}


@pytest.mark.parametrize(("method", "verb", "template", "body"), RULES, ids=RULE_IDS)
def test_every_rule_is_a_route_the_gateway_derived(
    app: FastAPI, method: MethodDescriptor, verb: str, template: str, body: str
) -> None:
    assert not (method.client_streaming or method.server_streaming), "the bridge serves unary methods only"
    route = next(_served_by(app, verb, template), None)

    # The first route a request reaches is the derived one, not a hand-written route with another JSON.
    assert isinstance(route, APIRoute)
    assert (route.name, route.summary) == (method.name, method.full_name)


@pytest.mark.parametrize(("verb", "path"), HAND_WRITTEN, ids=[f"{verb} {path}" for verb, path in HAND_WRITTEN])
def test_no_rule_declares_a_hand_written_route(verb: str, path: str) -> None:
    probe = _probe(verb, path)
    declared = [
        method.full_name
        for method, rule_verb, template, _ in RULES
        if Route(fastapi_path(template)[0], lambda request: None, methods=[rule_verb]).matches(probe)[0] is Match.FULL
    ]
    assert declared == []


@pytest.mark.parametrize(("method", "verb", "template", "body"), RULES, ids=RULE_IDS)
async def test_every_rule_reads_proto_json(
    app: FastAPI, method: MethodDescriptor, verb: str, template: str, body: str
) -> None:
    """A field the request message lacks is refused the proto JSON way, before the core is called."""
    path = _probe(verb, fastapi_path(template)[0])["path"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade") as http:
        if body:
            response = await http.request(verb, path, json={"no_such_field": 1})
        else:
            response = await http.request(verb, path, params={"no_such_field": "1"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_parameter"
    assert response.json()["error"]["param"] == "no_such_field"
