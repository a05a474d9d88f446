"""JSON bytes exactly as Rust's `serde_json::to_string` writes a `serde_json::Value`.

Atoma nodes parse a request body into a `Value` (with `preserve_order`) and hash what
`to_string` gives back, so the proxy must sign those same bytes. serde_json's compact form:
- no whitespace; object keys in insertion order (a duplicate key keeps its first place and its
  last value, as Python's dict does when parsing);
- strings: `"` and `\\` escaped, \\b \\t \\n \\f \\r short-escaped, other controls below 0x20 as
  \\u00xx (lowercase hex), everything else (non-ASCII, DEL) raw UTF-8;
- integers that fit i64/u64 as integers; larger ones were parsed as f64 and print as floats;
- floats by ryu: shortest round-trip digits, `1.0`, `0.001`, `1e16`, `1.5e-7` (no `+`, no
  padding), `-0.0`; NaN and infinities become `null`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "format_float", "normalize"]

_ESCAPE = json.encoder.py_encode_basestring  # type: ignore[attr-defined]
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


def dumps(value: Any) -> bytes:
    """The compact serde_json serialization of a JSON value (dict, list, str, int, float, bool, None)."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("JSON string holds a lone surrogate, which serde_json cannot represent") from None


def normalize(body: bytes) -> bytes:
    """Re-serialize JSON bytes as a node re-serializes them (ValueError when serde_json would refuse them)."""
    return dumps(json.loads(body, parse_constant=_refuse_constant))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json takes NaN and Infinity; serde_json does not


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_ESCAPE(value))
    elif isinstance(value, int):
        out.append(str(value) if _I64_MIN <= value <= _U64_MAX else format_float(float(value)))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_ESCAPE(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def format_float(value: float) -> str:
    """An f64 as ryu (and so serde_json) prints it."""
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    if value == 0.0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-trip digits, the same digits ryu picks; Decimal splits them.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    assert isinstance(exponent, int)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    k = exponent  # value = digits x 10^k
    kk = length + k  # 10^(kk-1) <= value < 10^kk
    if 0 <= k and kk <= 16:
        return f"{sign}{digits}{'0' * k}.0"
    if 0 < kk <= 16:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if -5 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    if length == 1:
        return f"{sign}{digits}e{kk - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{kk - 1}"
