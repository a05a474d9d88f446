from atoma_proxy.generated.atoma.routing.v1 import chat_pb2 as _chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import common_pb2 as _common_pb2
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as _confidential_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateResponseRequest(_message.Message):
    __slots__ = ("request_json", "request")
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request_json: str
    request: _struct_pb2.Struct
    def __init__(self, request_json: _Optional[str] = ..., request: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateResponseResponse(_message.Message):
    __slots__ = ("stream_event", "response", "end")
    STREAM_EVENT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    stream_event: str
    response: str
    end: _common_pb2.StreamEnd
    def __init__(self, stream_event: _Optional[str] = ..., response: _Optional[str] = ..., end: _Optional[_Union[_common_pb2.StreamEnd, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("object", "data")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    object: str
    data: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, object: _Optional[str] = ..., data: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "object", "created", "owned_by", "kind", "context_length", "pricing", "nodes")
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    OWNED_BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    id: str
    object: str
    created: int
    owned_by: str
    kind: str
    context_length: int
    pricing: ModelPricing
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., object: _Optional[str] = ..., created: _Optional[int] = ..., owned_by: _Optional[str] = ..., kind: _Optional[str] = ..., context_length: _Optional[int] = ..., pricing: _Optional[_Union[ModelPricing, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelPricing(_message.Message):
    __slots__ = ("input_per_million", "output_per_million", "per_image")
    INPUT_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    input_per_million: PriceRange
    output_per_million: PriceRange
    per_image: PriceRange
    def __init__(self, input_per_million: _Optional[_Union[PriceRange, _Mapping]] = ..., output_per_million: _Optional[_Union[PriceRange, _Mapping]] = ..., per_image: _Optional[_Union[PriceRange, _Mapping]] = ...) -> None: ...

class PriceRange(_message.Message):
    __slots__ = ("min_micro_usd", "max_micro_usd", "min_usd", "max_usd")
    MIN_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    MIN_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_USD_FIELD_NUMBER: _ClassVar[int]
    min_micro_usd: int
    max_micro_usd: int
    min_usd: str
    max_usd: str
    def __init__(self, min_micro_usd: _Optional[int] = ..., max_micro_usd: _Optional[int] = ..., min_usd: _Optional[str] = ..., max_usd: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class EstimateCostRequest(_message.Message):
    __slots__ = ("chat_completion", "completion", "embeddings", "generate_images")
    CHAT_COMPLETION_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    chat_completion: ChatCompletionRequest
    completion: CompletionRequest
    embeddings: EmbeddingsRequest
    generate_images: GenerateImagesRequest
    def __init__(self, chat_completion: _Optional[_Union[ChatCompletionRequest, _Mapping]] = ..., completion: _Optional[_Union[CompletionRequest, _Mapping]] = ..., embeddings: _Optional[_Union[EmbeddingsRequest, _Mapping]] = ..., generate_images: _Optional[_Union[GenerateImagesRequest, _Mapping]] = ...) -> None: ...

class EstimateCostResponse(_message.Message):
    __slots__ = ("model", "kind", "prompt_tokens", "prompt_tokens_exact", "max_completion_tokens", "reserved_completion_tokens", "images", "min_cost_micro_usd", "max_cost_micro_usd", "reserved_micro_usd", "user_price", "nodes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_EXACT_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    USER_PRICE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    model: str
    kind: str
    prompt_tokens: int
    prompt_tokens_exact: bool
    max_completion_tokens: int
    reserved_completion_tokens: int
    images: int
    min_cost_micro_usd: int
    max_cost_micro_usd: int
    reserved_micro_usd: int
    user_price: bool
    nodes: _containers.RepeatedCompositeFieldContainer[NodeQuote]
    def __init__(self, model: _Optional[str] = ..., kind: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., prompt_tokens_exact: _Optional[bool] = ..., max_completion_tokens: _Optional[int] = ..., reserved_completion_tokens: _Optional[int] = ..., images: _Optional[int] = ..., min_cost_micro_usd: _Optional[int] = ..., max_cost_micro_usd: _Optional[int] = ..., reserved_micro_usd: _Optional[int] = ..., user_price: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[NodeQuote, _Mapping]]] = ...) -> None: ...

class NodeQuote(_message.Message):
    __slots__ = ("node_id", "healthy", "cost_micro_usd")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    healthy: bool
    cost_micro_usd: int
    def __init__(self, node_id: _Optional[str] = ..., healthy: _Optional[bool] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class ChatCompletionRequest(_message.Message):
    __slots__ = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed", "presence_penalty", "frequency_penalty", "user", "extra_json", "extra")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    n: int
    stream: bool
    stream_options: _common_pb2.StreamOptions
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    presence_penalty: float
    frequency_penalty: float
    user: str
    extra_json: str
    extra: _struct_pb2.Struct
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., max_completion_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., n: _Optional[int] = ..., stream: _Optional[bool] = ..., stream_options: _Optional[_Union[_common_pb2.StreamOptions, _Mapping]] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., user: _Optional[str] = ..., extra_json: _Optional[str] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ChatCompletionResponse(_message.Message):
    __slots__ = ("chunk", "completion", "end", "chunks")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunk: str
    completion: str
    end: _common_pb2.StreamEnd
    chunks: _common_pb2.Chunks
    def __init__(self, chunk: _Optional[str] = ..., completion: _Optional[str] = ..., end: _Optional[_Union[_common_pb2.StreamEnd, _Mapping]] = ..., chunks: _Optional[_Union[_common_pb2.Chunks, _Mapping]] = ...) -> None: ...

class CompletionRequest(_message.Message):
    __slots__ = ("model", "prompt", "prompt_tokens", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed", "user", "extra_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: _containers.RepeatedScalarFieldContainer[str]
    prompt_tokens: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenIds]
    max_tokens: int
    temperature: float
    top_p: float
    n: int
    stream: bool
    stream_options: _common_pb2.StreamOptions
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    user: str
    extra_json: str
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[_Iterable[str]] = ..., prompt_tokens: _Optional[_Iterable[_Union[_common_pb2.TokenIds, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., n: _Optional[int] = ..., stream: _Optional[bool] = ..., stream_options: _Optional[_Union[_common_pb2.StreamOptions, _Mapping]] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., user: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class CompletionResponse(_message.Message):
    __slots__ = ("chunk", "completion", "end", "chunks")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunk: str
    completion: str
    end: _common_pb2.StreamEnd
    chunks: _common_pb2.Chunks
    def __init__(self, chunk: _Optional[str] = ..., completion: _Optional[str] = ..., end: _Optional[_Union[_common_pb2.StreamEnd, _Mapping]] = ..., chunks: _Optional[_Union[_common_pb2.Chunks, _Mapping]] = ...) -> None: ...

class EmbeddingsRequest(_message.Message):
    __slots__ = ("model", "input", "input_tokens", "encoding_format", "dimensions", "user", "extra_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: _containers.RepeatedScalarFieldContainer[str]
    input_tokens: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenIds]
    encoding_format: str
    dimensions: int
    user: str
    extra_json: str
    def __init__(self, model: _Optional[str] = ..., input: _Optional[_Iterable[str]] = ..., input_tokens: _Optional[_Iterable[_Union[_common_pb2.TokenIds, _Mapping]]] = ..., encoding_format: _Optional[str] = ..., dimensions: _Optional[int] = ..., user: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class EmbeddingsResponse(_message.Message):
    __slots__ = ("response_json", "usage", "routing", "cost_micro_usd")
    RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    response_json: str
    usage: _common_pb2.Usage
    routing: _common_pb2.RoutingInfo
    cost_micro_usd: int
    def __init__(self, response_json: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class GenerateImagesRequest(_message.Message):
    __slots__ = ("model", "prompt", "n", "size", "quality", "response_format", "style", "user", "extra_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    n: int
    size: str
    quality: str
    response_format: str
    style: str
    user: str
    extra_json: str
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., n: _Optional[int] = ..., size: _Optional[str] = ..., quality: _Optional[str] = ..., response_format: _Optional[str] = ..., style: _Optional[str] = ..., user: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class GenerateImagesResponse(_message.Message):
    __slots__ = ("response_json", "routing", "cost_micro_usd")
    RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    response_json: str
    routing: _common_pb2.RoutingInfo
    cost_micro_usd: int
    def __init__(self, response_json: _Optional[str] = ..., routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "models", "healthy", "in_flight", "input_price_per_million", "output_price_per_million")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    models: _containers.RepeatedScalarFieldContainer[str]
    healthy: bool
    in_flight: int
    input_price_per_million: int
    output_price_per_million: int
    def __init__(self, node_id: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., healthy: _Optional[bool] = ..., in_flight: _Optional[int] = ..., input_price_per_million: _Optional[int] = ..., output_price_per_million: _Optional[int] = ...) -> None: ...
