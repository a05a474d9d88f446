"""Opaque page tokens for keyset pagination (AIP-158): the token names the last record of a page."""

from __future__ import annotations

import base64
import binascii

from atoma_proxy.core.errors import InvalidRequest

__all__ = ["decode_page_token", "encode_page_token"]

_PREFIX = "before:"


def encode_page_token(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{before_id}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int | None:
    """The id the next page starts below; None for the first page (empty token)."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if text.startswith(_PREFIX) and text[len(_PREFIX) :].isdigit():
            return int(text[len(_PREFIX) :])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidRequest("`page_token` is not a token this API issued.", param="page_token")
