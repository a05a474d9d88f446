"""grpc-gateway at runtime: REST routes derived from `google.api.http` options.

For every unary method of a service whose HTTP rule is not already served by a hand-written
route, one FastAPI route is registered: `{var}` path segments and (without `body: "*"`) query
parameters fill the request message, `body: "*"` is the JSON body (proto3 JSON mapping), the
answer is `MessageToDict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)`.
New admin/account RPCs get REST for free. The inference and confidential RPCs declare no rule:
their REST JSON is OpenAI's (or Atoma's), not proto JSON, so their routes are hand-written
(`routes_openai`, `routes_confidential`); tests/facade/test_http_rules.py holds our protos to that
(every rule is a route derived here, no rule names a hand-written route). Errors go through
`errors.py` like everywhere else.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from google.api import annotations_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from atoma_proxy.core.errors import excerpt
from atoma_proxy.facade.body import read_json_object
from atoma_proxy.facade.errors import ApiError, invalid_request
from atoma_proxy.facade.proto_json_errors import parse_error
from atoma_proxy.facade.relay import call_unary

__all__ = ["add_gateway_routes", "fastapi_path", "http_rules"]

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^}]*))?\}")
_FASTAPI_PARAM = re.compile(r"\{[^}]+\}")
_INTEGERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def http_rules(method: MethodDescriptor) -> list[tuple[str, str, str]]:
    """(HTTP verb, path template, body) of each binding of the method's `google.api.http` option."""
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    rules: list[tuple[str, str, str]] = []
    for binding in [rule, *rule.additional_bindings]:
        kind = binding.WhichOneof("pattern")
        if kind == "custom":
            rules.append((binding.custom.kind.upper(), binding.custom.path, binding.body))
        elif kind is not None:
            rules.append((kind.upper(), getattr(binding, kind), binding.body))
    return rules


def add_gateway_routes(app: FastAPI, service: ServiceDescriptor, get_stub: Callable[[Request], Any]) -> list[str]:
    """Registers the derived routes of `service`; returns them as "VERB /path" for logs and tests."""
    added: list[str] = []
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        for verb, template, body in http_rules(method):
            path, variables = fastapi_path(template)
            if _served(app.router.routes, verb, path):
                continue
            app.add_api_route(
                path,
                _endpoint(method, body, variables, get_stub),
                methods=[verb],
                name=method.name,
                summary=method.full_name,
                openapi_extra=_openapi(method.input_type, body, variables),
            )
            added.append(f"{verb} {path}")
    return added


def fastapi_path(template: str) -> tuple[str, dict[str, str]]:
    """`/v1/{name=**}` -> `/v1/{name:path}`; returns the path and {path param: field path}."""
    variables: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        field_path, pattern = match[1], match[2]
        param = field_path.replace(".", "__")
        variables[param] = field_path
        if pattern in (None, "*"):
            return "{" + param + "}"
        if pattern == "**":
            return "{" + param + ":path}"
        raise ValueError(f"unsupported path template segment {match[0]!r} in {template!r}")

    return _VARIABLE.sub(replace, template), variables


def _served(routes: list[BaseRoute], verb: str, path: str) -> bool:
    """Whether a request for this rule would reach an existing route (routers included or not)."""
    probe = {"type": "http", "method": verb, "path": _FASTAPI_PARAM.sub("x", path), "root_path": "", "headers": []}
    return any(route.matches(probe)[0] is Match.FULL for route in routes)


def _endpoint(
    method: MethodDescriptor, body: str, variables: dict[str, str], get_stub: Callable[[Request], Any]
) -> Callable[[Request], Any]:
    request_class = message_factory.GetMessageClass(method.input_type)

    async def endpoint(request: Request) -> Response:
        message = request_class()
        if body:
            target = message if body == "*" else _field_message(message, body)
            try:
                json_format.ParseDict(await read_json_object(request), target)
            except json_format.ParseError as error:
                raise parse_error(error, target.DESCRIPTOR) from None
        for param, field_path in variables.items():
            _set_field(message, field_path, request.path_params[param])
        if body != "*":
            for name, value in request.query_params.multi_items():
                _set_field(message, name, value)
        response, headers = await call_unary(request, getattr(get_stub(request), method.name), message)
        printed = json_format.MessageToDict(
            response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return Response(orjson.dumps(printed), media_type="application/json", headers=headers)

    return endpoint


def _field_message(message: Any, field_path: str) -> Any:
    for name in field_path.split("."):
        field = message.DESCRIPTOR.fields_by_name.get(name)
        if field is None or field.message_type is None or field.is_repeated:
            raise _unknown(field_path)
        message = getattr(message, name)
    return message


def _set_field(message: Any, field_path: str, value: str) -> None:
    """Sets a scalar (or appends to a repeated scalar) from its string form, as grpc-gateway does."""
    parent, _, leaf = field_path.rpartition(".")
    if parent:
        message = _field_message(message, parent)
    field = message.DESCRIPTOR.fields_by_name.get(leaf)
    if field is None or field.message_type is not None:
        raise _unknown(field_path)
    try:
        converted = _scalar(field, value)
        if field.is_repeated:
            getattr(message, leaf).append(converted)
        else:
            setattr(message, leaf, converted)
    except (ValueError, TypeError, KeyError):
        raise invalid_request(
            f"Invalid value for `{excerpt(field_path)}`: {excerpt(value)!r}.",
            param=excerpt(field_path),
            code="invalid_value",
        ) from None


def _unknown(field_path: str) -> ApiError:
    name = excerpt(field_path)
    return invalid_request(f"Unknown parameter: `{name}`.", param=name, code="unknown_parameter")


def _scalar(field: FieldDescriptor, value: str) -> Any:
    if field.type in _INTEGERS:
        return int(value)
    if field.type in _FLOATS:
        return float(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value not in ("true", "false", "1", "0"):
            raise ValueError(value)
        return value in ("true", "1")
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        named = enum.values_by_name.get(value)
        return named.number if named is not None else enum.values_by_number[int(value)].number
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return value


_SCHEMA_TYPES = {FieldDescriptor.TYPE_BOOL: "boolean", FieldDescriptor.TYPE_STRING: "string"}


def _openapi(message: Descriptor, body: str, variables: dict[str, str]) -> dict[str, Any]:
    parameters = [{"name": param, "in": "path", "required": True, "schema": {"type": "string"}} for param in variables]
    if body != "*":
        path_fields = set(variables.values())
        parameters += [
            {"name": f.name, "in": "query", "required": False, "schema": _field_schema(f)}
            for f in message.fields
            if f.message_type is None and f.name not in path_fields and f.name != body
        ]
    extra: dict[str, Any] = {"parameters": parameters} if parameters else {}
    if body:
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    return extra


def _field_schema(field: FieldDescriptor) -> dict[str, Any]:
    if field.type in _INTEGERS:
        kind = "integer"
    elif field.type in _FLOATS:
        kind = "number"
    else:
        kind = _SCHEMA_TYPES.get(field.type, "string")
    return {"type": "array", "items": {"type": kind}} if field.is_repeated else {"type": kind}
