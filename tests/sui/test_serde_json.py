"""Bytes as serde_json::to_string writes them (outputs checked against serde_json 1.x + ryu)."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoma_proxy.sui.serde_json import dumps, format_float, normalize


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (100.0, "100.0"),
        (-2.5, "-2.5"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e16"),
        (1.5e16, "1.5e16"),
        (1e-5, "0.00001"),
        (1e-6, "1e-6"),
        (1.5e-7, "1.5e-7"),
        (0.001234, "0.001234"),
        (1e300, "1e300"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e308"),
        (123.456, "123.456"),
        (float("nan"), "null"),
    ],
)
def test_floats_print_as_ryu(value: float, expected: str) -> None:
    assert format_float(value) == expected


def test_compact_with_key_order_and_serde_escapes() -> None:
    body = {"z": 1, "a": [True, None, 0.7], "s": 'é"\\\n\t\x01\x7f/€', "n": {"b": -3, "a": {}}}
    assert dumps(body) == '{"z":1,"a":[true,null,0.7],"s":"é\\"\\\\\\n\\t\\u0001\x7f/€","n":{"b":-3,"a":{}}}'.encode()


def test_integers_beyond_64_bits_are_floats_as_serde_json_parses_them() -> None:
    expected = b"[18446744073709551615,1.8446744073709552e19,-9223372036854775808,-9.223372036854776e18]"
    assert dumps([2**64 - 1, 2**64, -(2**63), -(2**63) - 1]) == expected


def test_normalize_reparses_like_a_node() -> None:
    sent = b'{ "model" : "m", "temperature": 1e0, "max_tokens": 5, "model": "n", "x": -0 }'
    # A duplicate key keeps its first place and its last value (serde_json's IndexMap, Python's dict).
    assert normalize(sent) == b'{"model":"n","temperature":1.0,"max_tokens":5,"x":0}'
    with pytest.raises(ValueError):
        normalize(b"{not json")


def test_round_trips_through_json() -> None:
    body = {"messages": [{"role": "user", "content": "hi ✓"}], "temperature": 0.30000000000000004}
    assert json.loads(dumps(body)) == body


def test_nan_and_infinity_are_not_json() -> None:
    for text in (b"[NaN]", b'{"a": Infinity}', b"-Infinity"):
        with pytest.raises(ValueError):
            normalize(text)


_PLAIN = re.compile(r"-?\d+\.\d+")
_EXPONENT = re.compile(r"-?\d(\.\d+)?e-?[1-9]\d*")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_round_trips_in_ryu_form(value: float) -> None:
    text = format_float(value)
    assert float(text) == value and math.copysign(1, float(text)) == math.copysign(1, value)
    magnitude = abs(value)
    if magnitude == 0 or 1e-5 <= magnitude < 1e16:
        assert _PLAIN.fullmatch(text), text  # decimal notation, always with a fraction
    else:
        assert _EXPONENT.fullmatch(text), text  # d[.ddd]e[-]x: no "+", no leading zeros
