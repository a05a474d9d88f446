"""What counts as a database outage (503 DATABASE_UNAVAILABLE), and `within`'s bound on a hung call."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from atoma_proxy.core.persistence.outage import DatabaseTimeout, is_database_outage, within


def _psycopg_error(kind: type[psycopg.Error], sqlstate: str | None) -> psycopg.Error:
    error = kind("x")
    error.sqlstate = sqlstate  # type: ignore[misc]
    return error


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (psycopg.OperationalError("connection refused"), True),
        (_psycopg_error(psycopg.OperationalError, "57P01"), True),  # admin shutdown
        (_psycopg_error(psycopg.OperationalError, "08006"), True),  # connection failure
        (_psycopg_error(psycopg.errors.DeadlockDetected, "40P01"), False),
        (_psycopg_error(psycopg.errors.SerializationFailure, "40001"), False),
        (sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("refused")), True),
        (sa_exc.OperationalError("UPDATE", {}, _psycopg_error(psycopg.errors.DeadlockDetected, "40P01")), False),
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        (DatabaseTimeout("hung"), True),
        (ValueError("a bug"), False),
    ],
)
def test_only_a_database_that_does_not_answer_is_an_outage(error: BaseException, outage: bool) -> None:
    assert is_database_outage(error) is outage


def test_an_error_raised_while_handling_an_outage_is_the_outage() -> None:
    try:
        try:
            raise DatabaseTimeout("hung")
        except DatabaseTimeout:
            raise sa_exc.InvalidRequestError("rollback while a statement is in progress")  # noqa: B904
    except sa_exc.InvalidRequestError as error:
        assert is_database_outage(error)


async def test_within_gives_up_on_a_hung_call_without_waiting_for_its_clean_up() -> None:
    cleaning = asyncio.Event()
    release = asyncio.Event()

    async def hung() -> None:
        try:
            await asyncio.Event().wait()
        finally:  # like psycopg's cancel request to a hung server: slow clean-up
            cleaning.set()
            await release.wait()

    with pytest.raises(DatabaseTimeout) as raised:
        await within(0.01, hung(), "a hung call")
    await cleaning.wait()
    abandoned = raised.value.abandoned
    assert abandoned is not None and not abandoned.done()  # the caller got its answer; the clean-up goes on
    release.set()
    await asyncio.wait({abandoned})
    assert abandoned.cancelled()
