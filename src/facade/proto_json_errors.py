"""Proto JSON parse failures as plain OpenAI 400s, never protobuf's own wording.

`json_format.ParseError` texts name message types, Python types and internal field paths
("Failed to parse email field: expected string or bytes-like object, got 'int'."). The client gets
the offending field as `param`, a sentence about the value expected, and a code like the rest of
the facade's: `unknown_parameter`, `invalid_type`, or `invalid_request` when the field is not known.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from atoma_proxy.core.errors import excerpt
from atoma_proxy.facade.errors import ApiError, invalid_request

__all__ = ["parse_error"]

_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]{1,200})"')
_BAD_FIELD = re.compile(r"Failed to parse (\w{1,200}) field")
_INTEGER_TYPES = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}


def parse_error(error: Exception, message: Descriptor) -> ApiError:
    """The 400 for a body that `json_format.ParseDict` refused for `message`."""
    text = str(error)
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown is not None:
        name = excerpt(unknown[1])
        return invalid_request(f"Unknown parameter: `{name}`.", param=name, code="unknown_parameter")
    bad = _BAD_FIELD.search(text)
    field = message.fields_by_name.get(bad[1]) if bad is not None else None
    if field is None:
        return invalid_request("The request body does not match the fields of this request.", code="invalid_request")
    return invalid_request(
        f"Invalid value for `{field.name}`: expected {_expected(field)}.", param=field.name, code="invalid_type"
    )


def _expected(field: FieldDescriptor) -> str:
    if field.is_repeated and field.message_type is None:
        return "an array"
    kind = field.cpp_type
    if kind in _INTEGER_TYPES:
        return "an integer within range (a number or a string of digits)"
    if kind in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return "a number"
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return "true or false"
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return "one of the allowed values"
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        return "an object"
    return "a string"
