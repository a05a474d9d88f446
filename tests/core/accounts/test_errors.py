"""The account reasons are part of the documented contract: in REASONS and in README's error table."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from atoma_proxy.core.errors import REASONS
from atoma_proxy.facade.errors import HTTP_STATUS_BY_CODE

README = Path(__file__).resolve().parents[3] / "README.md"
ACCOUNT_REASONS = {
    "MISSING_CREDENTIALS": grpc.StatusCode.UNAUTHENTICATED,
    "INVALID_CREDENTIALS": grpc.StatusCode.UNAUTHENTICATED,
    "INVALID_TOKEN": grpc.StatusCode.UNAUTHENTICATED,
    "TOKEN_EXPIRED": grpc.StatusCode.UNAUTHENTICATED,
    "TOKEN_REVOKED": grpc.StatusCode.UNAUTHENTICATED,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "EMAIL_TAKEN": grpc.StatusCode.ALREADY_EXISTS,
    "IDEMPOTENCY_KEY_REUSED": grpc.StatusCode.ALREADY_EXISTS,
    "USER_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "API_KEY_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "NODE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ACCOUNTS_DISABLED": grpc.StatusCode.UNIMPLEMENTED,
    "ADMIN_DISABLED": grpc.StatusCode.UNIMPLEMENTED,
}


@pytest.mark.parametrize(("reason", "code"), ACCOUNT_REASONS.items())
def test_reason_is_documented_with_its_code_and_http_status(reason: str, code: grpc.StatusCode) -> None:
    row = re.search(rf"^\| `{reason}` \| (\w+) \| (\d+) \|", README.read_text(), re.MULTILINE)

    assert REASONS[reason] == code
    assert row is not None, f"{reason} is missing from README's error table"
    assert (row[1], int(row[2])) == (code.name, HTTP_STATUS_BY_CODE[code])
