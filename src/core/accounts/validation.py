"""Checks of account request fields; each failure is an InvalidRequest naming the field."""

from __future__ import annotations

import re
from datetime import date

from atoma_proxy.core.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from atoma_proxy.core.emails import canonical_email
from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.limits import (
    MAX_COMPUTE_UNITS,
    MAX_CREDIT_MICRO_USD,
    MAX_CREDITED_MICRO_USD,
    MAX_PRICE_MICRO_USD,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "check_amount",
    "check_compute_units",
    "check_credit",
    "check_idempotency_key",
    "check_key_name",
    "check_password",
    "check_price",
    "check_required",
    "check_text",
    "day_range",
    "normalize_email",
    "page_size",
]

MAX_PAGE_SIZE = 1000
_DEFAULT_PAGE_SIZE = 100
_MAX_EMAIL_LENGTH = 320
# Deliberately loose (one @, a dot in the domain, no spaces): deliverability is not ours to judge.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Control characters (NUL among them, which PostgreSQL text cannot hold) have no place in names and keys.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_email(email: str) -> str:
    """The stored form of an email address (`canonical_email`); InvalidRequest if it is not one."""
    if len(email) > 4 * _MAX_EMAIL_LENGTH:  # NFKC may lengthen a string: refuse the absurd before it
        raise InvalidRequest("`email` must be an email address.", param="email")
    normalized = canonical_email(email)
    if len(normalized) > _MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(normalized) or _CONTROL.search(normalized):
        raise InvalidRequest("`email` must be an email address.", param="email")
    return normalized


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"`password` must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.", param="password"
        )
    return password


def check_required(value: str, param: str) -> str:
    if not value:
        raise InvalidRequest(f"`{param}` is required.", param=param)
    return value


def check_text(value: str, param: str, *, max_length: int = 200) -> str:
    """Printable text of at most `max_length` characters (may be empty)."""
    if len(value) > max_length or _CONTROL.search(value):
        raise InvalidRequest(f"`{param}` must be printable text of at most {max_length} characters.", param=param)
    return value


def check_key_name(name: str) -> str:
    return check_text(check_required(name.strip(), "name"), "name")


def check_amount(amount: int, param: str, *, maximum: int = MAX_CREDITED_MICRO_USD) -> int:
    """A positive integer of at most `maximum` (README "Limits")."""
    if not 1 <= amount <= maximum:
        raise InvalidRequest(f"`{param}` must be between 1 and {maximum}.", param=param)
    return amount


def check_credit(amount: int, param: str = "amount_micro_usd") -> int:
    """One credit: 1 to MAX_CREDIT_MICRO_USD micro-USD."""
    return check_amount(amount, param, maximum=MAX_CREDIT_MICRO_USD)


def check_compute_units(units: int, param: str = "compute_units") -> int:
    """One stack: 1 to MAX_COMPUTE_UNITS units."""
    return check_amount(units, param, maximum=MAX_COMPUTE_UNITS)


def check_price(price: int, param: str) -> int:
    """A price in micro-USD (per million tokens, or per image): 0 to MAX_PRICE_MICRO_USD."""
    if not 0 <= price <= MAX_PRICE_MICRO_USD:
        raise InvalidRequest(f"`{param}` must be between 0 and {MAX_PRICE_MICRO_USD}.", param=param)
    return price


def check_idempotency_key(key: str) -> str:
    return check_text(check_required(key, "idempotency_key"), "idempotency_key")


def page_size(requested: int) -> int:
    """AIP-158: 0 means the default; more than the maximum is capped; negative is an error."""
    if requested < 0:
        raise InvalidRequest("`page_size` must not be negative.", param="page_size")
    return min(requested, MAX_PAGE_SIZE) if requested else _DEFAULT_PAGE_SIZE


def day_range(start_date: str, end_date: str) -> tuple[date | None, date | None]:
    """Inclusive UTC days from YYYY-MM-DD texts; an empty bound is None (unbounded)."""
    start = _day(start_date, "start_date")
    end = _day(end_date, "end_date")
    if start is not None and end is not None and end < start:
        raise InvalidRequest("`end_date` must not be before `start_date`.", param="end_date")
    return start, end


def _day(text: str, param: str) -> date | None:
    if not text:
        return None
    try:
        if len(text) == 10:  # fromisoformat also takes 20251123 and week dates
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidRequest(f"`{param}` must be a date as YYYY-MM-DD.", param=param)
