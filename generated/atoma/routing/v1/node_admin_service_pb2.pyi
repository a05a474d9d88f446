from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeServingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_SERVING_STATE_UNSPECIFIED: _ClassVar[NodeServingState]
    NODE_SERVING_STATE_ACTIVE: _ClassVar[NodeServingState]
    NODE_SERVING_STATE_DRAINING: _ClassVar[NodeServingState]

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]
NODE_SERVING_STATE_UNSPECIFIED: NodeServingState
NODE_SERVING_STATE_ACTIVE: NodeServingState
NODE_SERVING_STATE_DRAINING: NodeServingState
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState

class AddNodeRequest(_message.Message):
    __slots__ = ("node_id", "url", "models", "input_price_per_million", "output_price_per_million", "api_key", "confidential_signing_key", "apis", "price_per_image")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENTIAL_SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    APIS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    url: str
    models: _containers.RepeatedScalarFieldContainer[str]
    input_price_per_million: int
    output_price_per_million: int
    api_key: str
    confidential_signing_key: bytes
    apis: _containers.RepeatedScalarFieldContainer[str]
    price_per_image: int
    def __init__(self, node_id: _Optional[str] = ..., url: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., input_price_per_million: _Optional[int] = ..., output_price_per_million: _Optional[int] = ..., api_key: _Optional[str] = ..., confidential_signing_key: _Optional[bytes] = ..., apis: _Optional[_Iterable[str]] = ..., price_per_image: _Optional[int] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeState
    def __init__(self, node: _Optional[_Union[NodeState, _Mapping]] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeState
    def __init__(self, node: _Optional[_Union[NodeState, _Mapping]] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeState
    def __init__(self, node: _Optional[_Union[NodeState, _Mapping]] = ...) -> None: ...

class ListNodeStatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodeStatesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeState]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ...) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("node_id", "url", "models", "input_price_per_million", "output_price_per_million", "serving_state", "healthy", "circuit_state", "ejected_for_seconds", "in_flight", "source", "model_states", "price_per_image")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    SERVING_STATE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_STATE_FIELD_NUMBER: _ClassVar[int]
    EJECTED_FOR_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_STATES_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    url: str
    models: _containers.RepeatedScalarFieldContainer[str]
    input_price_per_million: int
    output_price_per_million: int
    serving_state: NodeServingState
    healthy: bool
    circuit_state: CircuitState
    ejected_for_seconds: float
    in_flight: int
    source: str
    model_states: _containers.RepeatedCompositeFieldContainer[NodeModelState]
    price_per_image: int
    def __init__(self, node_id: _Optional[str] = ..., url: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., input_price_per_million: _Optional[int] = ..., output_price_per_million: _Optional[int] = ..., serving_state: _Optional[_Union[NodeServingState, str]] = ..., healthy: _Optional[bool] = ..., circuit_state: _Optional[_Union[CircuitState, str]] = ..., ejected_for_seconds: _Optional[float] = ..., in_flight: _Optional[int] = ..., source: _Optional[str] = ..., model_states: _Optional[_Iterable[_Union[NodeModelState, _Mapping]]] = ..., price_per_image: _Optional[int] = ...) -> None: ...

class NodeModelState(_message.Message):
    __slots__ = ("model", "in_flight", "ttft_seconds", "time_per_output_token_seconds", "error_rate", "running", "waiting", "kv_cache_usage", "successes", "failures", "score")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    TTFT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIME_PER_OUTPUT_TOKEN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    model: str
    in_flight: int
    ttft_seconds: float
    time_per_output_token_seconds: float
    error_rate: float
    running: float
    waiting: float
    kv_cache_usage: float
    successes: int
    failures: int
    score: float
    def __init__(self, model: _Optional[str] = ..., in_flight: _Optional[int] = ..., ttft_seconds: _Optional[float] = ..., time_per_output_token_seconds: _Optional[float] = ..., error_rate: _Optional[float] = ..., running: _Optional[float] = ..., waiting: _Optional[float] = ..., kv_cache_usage: _Optional[float] = ..., successes: _Optional[int] = ..., failures: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...
