from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeRegistration(_message.Message):
    __slots__ = ("node_small_id", "public_address", "country", "timestamp")
    NODE_SMALL_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    node_small_id: int
    public_address: str
    country: str
    timestamp: int
    def __init__(self, node_small_id: _Optional[int] = ..., public_address: _Optional[str] = ..., country: _Optional[str] = ..., timestamp: _Optional[int] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("data", "signature")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    data: NodeRegistration
    signature: str
    def __init__(self, data: _Optional[_Union[NodeRegistration, _Mapping]] = ..., signature: _Optional[str] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("data", "sui_address")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SUI_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    data: NodeRegistration
    sui_address: str
    def __init__(self, data: _Optional[_Union[NodeRegistration, _Mapping]] = ..., sui_address: _Optional[str] = ...) -> None: ...
