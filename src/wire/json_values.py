"""Type checks of parsed JSON values, each naming the OpenAI param at fault.

A wrong type is rejected with an `OpenAIRequestError` naming the param (`messages[1].content`,
`max_tokens`) before anything reaches a proto setter, where it would surface as a TypeError (a
500 in the facade). Checks use `type(x) is T`, not isinstance: JSON `true` must not pass as the
integer 1. The facade answers the error with OpenAI's 400, the Python clients raise it as an
InvalidRequestError: both before anything is sent to the core.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = [
    "INT32",
    "INT64",
    "OpenAIRequestError",
    "boolean",
    "dumps_object",
    "integer",
    "missing",
    "number",
    "string",
    "wrong_type",
]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class OpenAIRequestError(ValueError):
    """An OpenAI request body the translation rejects: OpenAI's 400 `invalid_request_error`.

    `param` names the field at fault as OpenAI does (`messages[0].role`), `code` is OpenAI's error
    code (`invalid_type`, `missing_required_parameter`, `out_of_range`) or None.
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def wrong_type(param: str, expected: str) -> OpenAIRequestError:
    return OpenAIRequestError(f"Invalid type for `{param}`: expected {expected}.", param=param, code="invalid_type")


def missing(param: str) -> OpenAIRequestError:
    """OpenAI's error for an absent (or null) required parameter."""
    return OpenAIRequestError(
        f"You must provide a `{param}` parameter.", param=param, code="missing_required_parameter"
    )


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
        raise OpenAIRequestError(
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
            raise OpenAIRequestError(f"Invalid value for `{param}`: out of range.", param=param) from None
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
