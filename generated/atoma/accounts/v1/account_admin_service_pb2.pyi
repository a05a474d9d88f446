from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as _resources_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
