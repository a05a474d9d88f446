import datetime

from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as _resources_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageBucketWidth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_BUCKET_WIDTH_UNSPECIFIED: _ClassVar[UsageBucketWidth]
    USAGE_BUCKET_WIDTH_HOUR: _ClassVar[UsageBucketWidth]
    USAGE_BUCKET_WIDTH_DAY: _ClassVar[UsageBucketWidth]
USAGE_BUCKET_WIDTH_UNSPECIFIED: UsageBucketWidth
USAGE_BUCKET_WIDTH_HOUR: UsageBucketWidth
USAGE_BUCKET_WIDTH_DAY: UsageBucketWidth

class CreditBalanceRequest(_message.Message):
    __slots__ = ("user_id", "amount_micro_usd", "idempotency_key", "note")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    amount_micro_usd: int
    idempotency_key: str
    note: str
    def __init__(self, user_id: _Optional[int] = ..., amount_micro_usd: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class CreditBalanceResponse(_message.Message):
    __slots__ = ("applied", "balance")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    balance: _resources_pb2.Balance
    def __init__(self, applied: _Optional[bool] = ..., balance: _Optional[_Union[_resources_pb2.Balance, _Mapping]] = ...) -> None: ...

class SetUserModelPriceRequest(_message.Message):
    __slots__ = ("user_id", "model", "input_price_per_million", "output_price_per_million")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    model: str
    input_price_per_million: int
    output_price_per_million: int
    def __init__(self, user_id: _Optional[int] = ..., model: _Optional[str] = ..., input_price_per_million: _Optional[int] = ..., output_price_per_million: _Optional[int] = ...) -> None: ...

class SetUserModelPriceResponse(_message.Message):
    __slots__ = ("price",)
    PRICE_FIELD_NUMBER: _ClassVar[int]
    price: _resources_pb2.ModelPrice
    def __init__(self, price: _Optional[_Union[_resources_pb2.ModelPrice, _Mapping]] = ...) -> None: ...

class ListUserModelPricesRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class ListUserModelPricesResponse(_message.Message):
    __slots__ = ("prices",)
    PRICES_FIELD_NUMBER: _ClassVar[int]
    prices: _containers.RepeatedCompositeFieldContainer[_resources_pb2.ModelPrice]
    def __init__(self, prices: _Optional[_Iterable[_Union[_resources_pb2.ModelPrice, _Mapping]]] = ...) -> None: ...

class GetUserBalanceRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class GetUserBalanceResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: _resources_pb2.Balance
    def __init__(self, balance: _Optional[_Union[_resources_pb2.Balance, _Mapping]] = ...) -> None: ...

class GetUsageStatsRequest(_message.Message):
    __slots__ = ("bucket_width", "bucket_count", "top_users_limit")
    BUCKET_WIDTH_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOP_USERS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    bucket_width: UsageBucketWidth
    bucket_count: int
    top_users_limit: int
    def __init__(self, bucket_width: _Optional[_Union[UsageBucketWidth, str]] = ..., bucket_count: _Optional[int] = ..., top_users_limit: _Optional[int] = ...) -> None: ...

class UsageBucket(_message.Message):
    __slots__ = ("start_time", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_micro_usd", "mean_latency_ms", "max_latency_ms")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int
    mean_latency_ms: int
    max_latency_ms: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_micro_usd: _Optional[int] = ..., mean_latency_ms: _Optional[int] = ..., max_latency_ms: _Optional[int] = ...) -> None: ...

class UserSpend(_message.Message):
    __slots__ = ("user_id", "email", "requests", "prompt_tokens", "completion_tokens", "cost_micro_usd")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    email: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int
    def __init__(self, user_id: _Optional[int] = ..., email: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_micro_usd: _Optional[int] = ...) -> None: ...

class GetUsageStatsResponse(_message.Message):
    __slots__ = ("buckets", "top_users", "start_time", "end_time")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOP_USERS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[UsageBucket]
    top_users: _containers.RepeatedCompositeFieldContainer[UserSpend]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, buckets: _Optional[_Iterable[_Union[UsageBucket, _Mapping]]] = ..., top_users: _Optional[_Iterable[_Union[UserSpend, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
