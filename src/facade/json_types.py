"""Type checks of parsed JSON values, each naming the OpenAI param at fault.

The facade answers a wrong type with a 400 naming the param (`messages[1].content`,
`max_tokens`) before anything reaches a proto setter, where it would surface as a TypeError
and a 500. Checks use `type(x) is T`, not isinstance: JSON `true` must not pass as the integer 1.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from atoma_proxy.facade.errors import ApiError, invalid_request

__all__ = ["INT32", "INT64", "boolean", "dumps_object", "integer", "number", "string", "wrong_type"]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def wrong_type(param: str, expected: str) -> ApiError:
    return invalid_request(f"Invalid type for `{param}`: expected {expected}.", param=param, code="invalid_type")


def string(value: Any, param: str) -> str:
    if type(value) is not str:
        raise wrong_type(param, "a string")
    return value


def integer(value: Any, param: str, bounds: tuple[int, int]) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)  # JSON Schema's integer includes 2.0; pydantic-based servers accept it too
    elif type(value) is not int:
        raise wrong_type(param, "an integer")
    if not bounds[0] <= value <= bounds[1]:
        raise invalid_request(
            f"Invalid value for `{param}`: {value} is out of range.", param=param, code="out_of_range"
        )
    return value


def number(value: Any, param: str) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise invalid_request(f"Invalid value for `{param}`: out of range.", param=param) from None
    raise wrong_type(param, "a number")


def boolean(value: Any, param: str) -> bool:
    if type(value) is not bool:
        raise wrong_type(param, "a boolean")
    return value


def dumps_object(extra: dict[str, Any]) -> str:
    """Compact JSON of an `extra_json` object."""
    try:
        return orjson.dumps(extra).decode()
    except TypeError:
        # Integers beyond 64 bits (only from callers other than the orjson body parser).
        return json.dumps(extra, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
