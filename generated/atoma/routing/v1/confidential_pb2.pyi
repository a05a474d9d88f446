from atoma_proxy.generated.atoma.routing.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfidentialEndpoint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFIDENTIAL_ENDPOINT_UNSPECIFIED: _ClassVar[ConfidentialEndpoint]
    CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS: _ClassVar[ConfidentialEndpoint]
    CONFIDENTIAL_ENDPOINT_COMPLETIONS: _ClassVar[ConfidentialEndpoint]
    CONFIDENTIAL_ENDPOINT_EMBEDDINGS: _ClassVar[ConfidentialEndpoint]
    CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS: _ClassVar[ConfidentialEndpoint]
CONFIDENTIAL_ENDPOINT_UNSPECIFIED: ConfidentialEndpoint
CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS: ConfidentialEndpoint
CONFIDENTIAL_ENDPOINT_COMPLETIONS: ConfidentialEndpoint
CONFIDENTIAL_ENDPOINT_EMBEDDINGS: ConfidentialEndpoint
CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS: ConfidentialEndpoint

class LockNodeRequest(_message.Message):
    __slots__ = ("model", "max_num_tokens", "timeout", "endpoint", "exclude_node_ids")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_num_tokens: int
    timeout: float
    endpoint: ConfidentialEndpoint
    exclude_node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., max_num_tokens: _Optional[int] = ..., timeout: _Optional[float] = ..., endpoint: _Optional[_Union[ConfidentialEndpoint, str]] = ..., exclude_node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LockNodeResponse(_message.Message):
    __slots__ = ("public_key", "node_id", "node_small_id", "stack_small_id", "expires_at", "node_signing_key", "rotation_counter", "max_num_tokens")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_SMALL_ID_FIELD_NUMBER: _ClassVar[int]
    STACK_SMALL_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    ROTATION_COUNTER_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    node_id: str
    node_small_id: int
    stack_small_id: int
    expires_at: float
    node_signing_key: bytes
    rotation_counter: int
    max_num_tokens: int
    def __init__(self, public_key: _Optional[bytes] = ..., node_id: _Optional[str] = ..., node_small_id: _Optional[int] = ..., stack_small_id: _Optional[int] = ..., expires_at: _Optional[float] = ..., node_signing_key: _Optional[bytes] = ..., rotation_counter: _Optional[int] = ..., max_num_tokens: _Optional[int] = ...) -> None: ...

class ConfidentialEnvelope(_message.Message):
    __slots__ = ("ciphertext", "stack_small_id", "nonce", "salt", "client_dh_public_key", "node_dh_public_key", "plaintext_body_hash", "stream", "model_name", "num_compute_units")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    STACK_SMALL_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_DH_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NODE_DH_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_BODY_HASH_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_COMPUTE_UNITS_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    stack_small_id: int
    nonce: bytes
    salt: bytes
    client_dh_public_key: bytes
    node_dh_public_key: bytes
    plaintext_body_hash: bytes
    stream: bool
    model_name: str
    num_compute_units: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., stack_small_id: _Optional[int] = ..., nonce: _Optional[bytes] = ..., salt: _Optional[bytes] = ..., client_dh_public_key: _Optional[bytes] = ..., node_dh_public_key: _Optional[bytes] = ..., plaintext_body_hash: _Optional[bytes] = ..., stream: _Optional[bool] = ..., model_name: _Optional[str] = ..., num_compute_units: _Optional[int] = ...) -> None: ...

class SealedResponse(_message.Message):
    __slots__ = ("ciphertext", "nonce", "signature", "response_hash", "usage_json", "chunk_index", "final")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HASH_FIELD_NUMBER: _ClassVar[int]
    USAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    nonce: bytes
    signature: bytes
    response_hash: bytes
    usage_json: str
    chunk_index: int
    final: bool
    def __init__(self, ciphertext: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., response_hash: _Optional[bytes] = ..., usage_json: _Optional[str] = ..., chunk_index: _Optional[int] = ..., final: _Optional[bool] = ...) -> None: ...

class ConfidentialChatCompletionRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: ConfidentialEnvelope
    def __init__(self, envelope: _Optional[_Union[ConfidentialEnvelope, _Mapping]] = ...) -> None: ...

class ConfidentialChatCompletionResponse(_message.Message):
    __slots__ = ("answer", "chunk", "end")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    answer: SealedResponse
    chunk: SealedResponse
    end: _common_pb2.StreamEnd
    def __init__(self, answer: _Optional[_Union[SealedResponse, _Mapping]] = ..., chunk: _Optional[_Union[SealedResponse, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.StreamEnd, _Mapping]] = ...) -> None: ...

class ConfidentialCompletionRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: ConfidentialEnvelope
    def __init__(self, envelope: _Optional[_Union[ConfidentialEnvelope, _Mapping]] = ...) -> None: ...

class ConfidentialCompletionResponse(_message.Message):
    __slots__ = ("answer", "chunk", "end")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    answer: SealedResponse
    chunk: SealedResponse
    end: _common_pb2.StreamEnd
    def __init__(self, answer: _Optional[_Union[SealedResponse, _Mapping]] = ..., chunk: _Optional[_Union[SealedResponse, _Mapping]] = ..., end: _Optional[_Union[_common_pb2.StreamEnd, _Mapping]] = ...) -> None: ...

class ConfidentialEmbeddingsRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: ConfidentialEnvelope
    def __init__(self, envelope: _Optional[_Union[ConfidentialEnvelope, _Mapping]] = ...) -> None: ...

class ConfidentialEmbeddingsResponse(_message.Message):
    __slots__ = ("answer", "routing", "cost_micro_usd")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    answer: SealedResponse
    routing: _common_pb2.RoutingInfo
    cost_micro_usd: int
    def __init__(self, answer: _Optional[_Union[SealedResponse, _Mapping]] = ..., routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class ConfidentialGenerateImagesRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: ConfidentialEnvelope
    def __init__(self, envelope: _Optional[_Union[ConfidentialEnvelope, _Mapping]] = ...) -> None: ...

class ConfidentialGenerateImagesResponse(_message.Message):
    __slots__ = ("answer", "routing", "cost_micro_usd")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    answer: SealedResponse
    routing: _common_pb2.RoutingInfo
    cost_micro_usd: int
    def __init__(self, answer: _Optional[_Union[SealedResponse, _Mapping]] = ..., routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class RegisterNodeKeyRequest(_message.Message):
    __slots__ = ("node_id", "rotation_counter", "rotation_nonce", "public_key", "evidence", "signature", "signing_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROTATION_COUNTER_FIELD_NUMBER: _ClassVar[int]
    ROTATION_NONCE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    rotation_counter: int
    rotation_nonce: int
    public_key: bytes
    evidence: bytes
    signature: bytes
    signing_key: bytes
    def __init__(self, node_id: _Optional[str] = ..., rotation_counter: _Optional[int] = ..., rotation_nonce: _Optional[int] = ..., public_key: _Optional[bytes] = ..., evidence: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., signing_key: _Optional[bytes] = ...) -> None: ...

class RegisterNodeKeyResponse(_message.Message):
    __slots__ = ("rotation_counter", "valid_until")
    ROTATION_COUNTER_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    rotation_counter: int
    valid_until: float
    def __init__(self, rotation_counter: _Optional[int] = ..., valid_until: _Optional[float] = ...) -> None: ...

class GetNodeAttestationRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetNodeAttestationResponse(_message.Message):
    __slots__ = ("node_id", "rotation_counter", "rotation_nonce", "public_key", "evidence", "verified", "valid_until", "node_signing_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROTATION_COUNTER_FIELD_NUMBER: _ClassVar[int]
    ROTATION_NONCE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    NODE_SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    rotation_counter: int
    rotation_nonce: int
    public_key: bytes
    evidence: bytes
    verified: bool
    valid_until: float
    node_signing_key: bytes
    def __init__(self, node_id: _Optional[str] = ..., rotation_counter: _Optional[int] = ..., rotation_nonce: _Optional[int] = ..., public_key: _Optional[bytes] = ..., evidence: _Optional[bytes] = ..., verified: _Optional[bool] = ..., valid_until: _Optional[float] = ..., node_signing_key: _Optional[bytes] = ...) -> None: ...
