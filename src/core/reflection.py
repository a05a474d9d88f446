"""Server reflection under both names clients ask for: grpc.reflection.v1 and v1alpha.

grpcio-reflection implements only v1alpha. v1 is the same protocol (the same messages, field for
field, in another package), so one servicer answers both: the v1 method is registered with the
v1alpha messages' (de)serializers, which read and write the identical wire format. grpcurl and
Postman try v1 first. The v1 service's descriptor is added to the pool (a copy of v1alpha's under
the v1 names) so that it can be listed and described like any other service.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

__all__ = ["SERVICE_NAMES", "enable_reflection"]

_V1ALPHA = "grpc.reflection.v1alpha"
_V1 = "grpc.reflection.v1"
SERVICE_NAMES = (f"{_V1}.ServerReflection", reflection.SERVICE_NAME)


def _add_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(SERVICE_NAMES[0])
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = _V1
    proto.options.Clear()
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(f".{_V1ALPHA}.", f".{_V1}.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{_V1ALPHA}.", f".{_V1}.")
            method.output_type = method.output_type.replace(f".{_V1ALPHA}.", f".{_V1}.")
    pool.Add(proto)


def enable_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> tuple[str, ...]:
    """Reflection of `service_names` (and of reflection itself, v1 and v1alpha) on `server`; returns the names
    it lists: `service_names`, then reflection's."""
    _add_v1_descriptor()
    listed = (*service_names, *SERVICE_NAMES)
    servicer = reflection.aio.ReflectionServicer(listed)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    for name in SERVICE_NAMES:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    return listed
