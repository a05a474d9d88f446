"""The Meter never hands the database a number beyond 64 bits (README "Limits"), on SQLite and PostgreSQL.

A cap the core's validation did not see (a pass-through field, a legacy completion's extra cap) can still make
a request's most possible cost absurd: it is refused as INSUFFICIENT_FUNDS before anything is held, never a
"bigint out of range" (500) or a float on SQLite.
"""

from __future__ import annotations

from typing import Any

import pytest

from atoma_proxy.core.errors import InsufficientFunds
from atoma_proxy.core.ledger import Balance, RequestKind, buy_stack
from atoma_proxy.core.pipeline.call import InferenceCall
from tests.core.ledger import test_meter
from tests.core.ledger.conftest import NewUser
from tests.core.ledger.test_meter import MODEL, MakeMeter, Sessions, _balance, _funded

make_meter = test_meter.make_meter  # the Meter fixture of test_meter.py


@pytest.mark.parametrize("cap", [2**62, 2**63 - 1, 2**80])
async def test_a_reservation_beyond_any_balance_is_insufficient_funds_not_a_database_error(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser, cap: int
) -> None:
    meter = make_meter()
    principal = await _funded(sessions, new_user, 10**12)
    async with sessions() as session, session.begin():  # a stack to try, so units are bound too
        await buy_stack(
            session, user_id=principal.user_id, node_id="cheap", model=MODEL, compute_units=1000, price_per_million=1
        )
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": cap}

    with pytest.raises(InsufficientFunds):
        await test_meter._reserve(
            meter, principal, InferenceCall(request_id=f"huge-{cap}"), RequestKind.CHAT, MODEL, body, deadline=5
        )

    assert await _balance(sessions, principal.user_id) == Balance(10**12, 1, 0, 10**12 - 1)
