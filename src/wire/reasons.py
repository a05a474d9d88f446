"""The ErrorInfo reasons of the core, as the strings on the wire, from the one list: the ErrorReason proto enum.

`protos/atoma/routing/v1/error_reason.proto` lists every reason the core sends (AIP-193); on the wire a reason
is its enum name without the `ERROR_REASON_` prefix:

    reason_name(ErrorReason.ERROR_REASON_RATE_LIMITED) == "RATE_LIMITED"
    reason_value("RATE_LIMITED") == ErrorReason.ERROR_REASON_RATE_LIMITED

The core's error classes take their reasons from here, so a reason cannot be sent without being in the enum.
"""

from __future__ import annotations

from atoma_proxy.generated.atoma.routing.v1.error_reason_pb2 import ErrorReason

__all__ = ["ALL_REASONS", "PREFIX", "ErrorReason", "reason_name", "reason_value"]

PREFIX = "ERROR_REASON_"


def reason_name(value: ErrorReason) -> str:
    """The wire string of an ErrorReason: its name without the prefix (ValueError for an unknown number)."""
    return ErrorReason.Name(value).removeprefix(PREFIX)


def reason_value(name: str) -> ErrorReason:
    """The ErrorReason a wire string names; ERROR_REASON_UNSPECIFIED for one it does not know."""
    return _BY_NAME.get(name, ErrorReason.ERROR_REASON_UNSPECIFIED)


_BY_NAME = {
    reason_name(value): value for value in ErrorReason.values() if value != ErrorReason.ERROR_REASON_UNSPECIFIED
}

# Every reason the core may send.
ALL_REASONS: frozenset[str] = frozenset(_BY_NAME)
