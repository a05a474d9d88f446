"""Reserve before a node is called, settle (or release) once, expire what a crash left behind.

Every transition is a conditional UPDATE, so it happens exactly once whatever runs concurrently
(requests, several core instances, sweepers), on PostgreSQL and SQLite alike:

reserve   `UPDATE balances SET reserved = reserved + :a WHERE user_id = :u
            AND credited - debited - reserved >= :a` (or the same on a stack's units), then the
           INSERT of the reservation in state `held`. No row updated: InsufficientFunds, nothing
           written. No SELECT precedes the UPDATE, so no two requests can both see the same money.
settle    `UPDATE reservations SET state = 'settled' | 'released' WHERE request_id = :r
           AND state = 'held' RETURNING ...`; only when that returned a row: debit the charge
           (never more than was held), release the hold, INSERT the usage record and upsert the
           daily aggregate. All in one transaction; a second settle of the same request finds no
           held row and changes nothing.
sweep     the same conditional UPDATE to `expired` for held reservations past `expires_at` (with
           FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent sweepers split the work), releasing
           their holds and recording an `expired` usage record that charges nothing: after a
           crash, the proxy cannot know what the node produced, and it does not guess against
           the user.
late      a request whose reservation was swept while it was in fact still running (a core
           stalled past the margin) is settled late when it ends: state `expired` -> `settled`
           once, its charge taken only if the available balance (or stack) still covers it whole,
           and its usage record corrected.

Locks are always taken in the order reservation -> balance -> stack -> daily row (the sweeper
takes balances and stacks in id order), so these transactions never deadlock one another.

On PostgreSQL `reserve` and `settle_held` are one statement each (`_postgres`: the same conditional
UPDATEs and INSERTs as data-modifying CTEs); elsewhere they are the statements below, to be run in
one transaction. `reserve_postgresql` and `settle_held_postgresql` take a `StatementRunner`, which
is how the Meter runs them on its own autocommit connections.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, and_, func, insert, select, update

from atoma_proxy.core.errors import InsufficientFunds
from atoma_proxy.core.ledger import _postgres
from atoma_proxy.core.ledger._sql import balances, daily_usage, reservations, rowcount, stacks, usage_records
from atoma_proxy.core.persistence.dialects import Executor, insert_or_ignore, is_postgresql, upsert
from atoma_proxy.core.persistence.models import utcnow

__all__ = [
    "Charge",
    "DuplicateRequestId",
    "Hold",
    "Outcome",
    "Settlement",
    "release",
    "reserve",
    "settle",
    "settle_held",
    "settle_late",
    "sweep_expired",
]


_MAX_LATENCY_MS = 2**31 - 1


class Outcome:
    """How a request ended, as recorded in `usage_records.outcome`."""

    OK = "ok"
    CLIENT_CANCELLED = "client_cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NODE_FAILED = "node_failed"
    NODE_TIMEOUT = "node_timeout"
    NODE_REJECTED = "node_rejected"
    NO_NODE = "no_node"
    ERROR = "error"
    EXPIRED = "expired"


class DuplicateRequestId(Exception):
    """A reservation with this request id exists already; the transaction must be rolled back."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation in state `held`: `amount` micro-USD, or `units` of stack `stack_id` on `node_id`."""

    request_id: str
    user_id: int
    api_key_id: int | None
    model: str
    amount: int
    stack_id: int | None = None
    units: int = 0
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """What a finished request used; `cost` (micro-USD) and `units` are capped by the hold when settled."""

    outcome: str
    node_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0
    units: int = 0
    latency_ms: int = 0

    @property
    def billable(self) -> bool:
        return self.cost > 0 or self.units > 0 or self.prompt_tokens > 0 or self.completion_tokens > 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a settle applied: micro-USD debited and stack units used (0 when released)."""

    state: str
    cost: int
    units: int
    late: bool = False


async def reserve(
    session: Executor,
    *,
    request_id: str,
    user_id: int,
    api_key_id: int | None,
    model: str,
    amount: int,
    expires_at: datetime,
    instance_id: str,
    stacks_to_try: Sequence[tuple[int, str]] = (),
    units: int = 0,
) -> Hold:
    """Hold `units` of the first of `stacks_to_try` ((stack id, node id)) that has them free, else
    `amount` micro-USD of the balance. InsufficientFunds when neither can; DuplicateRequestId when
    the request id is taken. Call inside the caller's transaction (or, on PostgreSQL, on an autocommit
    connection: there it is one statement), and roll it back on an error.
    """
    if is_postgresql(session):
        return await reserve_postgresql(
            _postgres.on(session),
            request_id=request_id,
            user_id=user_id,
            api_key_id=api_key_id,
            model=model,
            amount=amount,
            expires_at=expires_at,
            instance_id=instance_id,
            stacks_to_try=stacks_to_try,
            units=units,
        )
    hold: Hold | None = None
    for stack_id, node_id in stacks_to_try if units > 0 else ():
        taken = await session.execute(
            update(stacks)
            .where(
                stacks.c.id == stack_id,
                stacks.c.user_id == user_id,
                stacks.c.total_units - stacks.c.used_units - stacks.c.reserved_units >= units,
            )
            .values(reserved_units=stacks.c.reserved_units + units)
        )
        if rowcount(taken) == 1:
            hold = Hold(request_id, user_id, api_key_id, model, 0, stack_id, units, node_id)
            break
    if hold is None:
        if amount > 0:
            taken = await session.execute(
                update(balances)
                .where(
                    balances.c.user_id == user_id,
                    balances.c.credited - balances.c.debited - balances.c.reserved >= amount,
                )
                .values(reserved=balances.c.reserved + amount)
            )
            if rowcount(taken) != 1:
                raise InsufficientFunds(user_id=user_id, required=amount)
        hold = Hold(request_id, user_id, api_key_id, model, amount)
    values = {
        "request_id": request_id,
        "user_id": user_id,
        "api_key_id": api_key_id,
        "model": model,
        "node_id": hold.node_id,
        "amount": hold.amount,
        "stack_id": hold.stack_id,
        "units": hold.units,
        "state": "held",
        "instance_id": instance_id,
        "created_at": utcnow(),
        "expires_at": expires_at,
    }
    inserted = await session.execute(
        insert_or_ignore(session, reservations, values, key=["request_id"]).returning(reservations.c.id)
    )
    if inserted.first() is None:
        raise DuplicateRequestId(request_id)
    return hold


async def reserve_postgresql(
    run: _postgres.StatementRunner,
    *,
    request_id: str,
    user_id: int,
    api_key_id: int | None,
    model: str,
    amount: int,
    expires_at: datetime,
    instance_id: str,
    stacks_to_try: Sequence[tuple[int, str]],
    units: int,
) -> Hold:
    """`reserve` on PostgreSQL, through `run` (one statement per attempt, atomic on its own)."""
    params = {
        "request_id": request_id,
        "user_id": user_id,
        "api_key_id": api_key_id,
        "model": model,
        "amount": amount,
        "units": units,
        "instance_id": instance_id,
        "now": utcnow(),
        "expires_at": expires_at,
    }
    # Each stack alone first (usually there is one), then the balance.
    attempts = [(stack_id, False) for stack_id, _ in stacks_to_try] if units > 0 else []
    for stack_id, fallback in [*attempts, (None, True)]:
        try:
            row = await run(_postgres.RESERVE, {**params, "stack_id": stack_id, "fallback": fallback})
        except _postgres.UniqueViolation as error:
            if error.constraint == "reservations_request_id_key":
                raise DuplicateRequestId(request_id) from None
            raise
        if row is not None:
            return Hold(request_id, user_id, api_key_id, model, row.amount, row.stack_id, row.units, row.node_id)
    raise InsufficientFunds(user_id=user_id, required=amount)


async def settle(
    session: Executor, request_id: str, charge: Charge, *, now: datetime | None = None
) -> Settlement | None:
    """Settle the reservation of `request_id` with `charge`: `settle_held`, else `settle_late`.

    None when there was nothing (left) to settle. Run it in one transaction.
    """
    settled = await settle_held(session, request_id, charge, now=now)
    if settled is None and (charge.cost > 0 or charge.units > 0):
        return await settle_late(session, request_id, charge, now=now)
    return settled


async def settle_held(
    session: Executor, request_id: str, charge: Charge, *, now: datetime | None = None
) -> Settlement | None:
    """Settle the held reservation of `request_id`; None when it is not held (any more).

    The state becomes `settled` when the request succeeded or something is charged, else `released`.
    On PostgreSQL it is one statement (atomic even in autocommit), else several (run in a transaction).
    """
    now = now or utcnow()
    state = "settled" if charge.outcome == Outcome.OK or charge.cost > 0 or charge.units > 0 else "released"
    if is_postgresql(session):
        return await settle_held_postgresql(_postgres.on(session), request_id, charge, now=now)
    row = (
        await session.execute(
            update(reservations)
            .where(reservations.c.request_id == request_id, reservations.c.state == "held")
            .values(state=state, finished_at=now, node_id=func.coalesce(charge.node_id, reservations.c.node_id))
            .returning(
                reservations.c.user_id,
                reservations.c.api_key_id,
                reservations.c.model,
                reservations.c.amount,
                reservations.c.stack_id,
                reservations.c.units,
                reservations.c.node_id,
            )
        )
    ).first()
    if row is None:
        return None
    cost = min(charge.cost, row.amount) if row.stack_id is None else 0
    units = min(charge.units, row.units) if row.stack_id is not None else 0
    if row.amount > 0:
        await session.execute(
            update(balances)
            .where(balances.c.user_id == row.user_id)
            .values(debited=balances.c.debited + cost, reserved=balances.c.reserved - row.amount)
        )
    if row.stack_id is not None:
        await session.execute(
            update(stacks)
            .where(stacks.c.id == row.stack_id)
            .values(used_units=stacks.c.used_units + units, reserved_units=stacks.c.reserved_units - row.units)
        )
    await session.execute(insert(usage_records).values(**_usage_values(request_id, row, charge, cost, units, now)))
    if charge.billable:
        await _add_daily(session, row.user_id, row.model, charge, cost, now)
    return Settlement(state, cost, units)


async def settle_held_postgresql(
    run: _postgres.StatementRunner,
    request_id: str,
    charge: Charge,
    *,
    now: datetime | None = None,
    user_id: int | None = None,
) -> Settlement | None:
    """`settle_held` on PostgreSQL, through `run`: one statement, atomic on its own.

    `user_id` (the reservation's) only orders the statement in a group commit (`LedgerWriter`).
    """
    now = now or utcnow()
    state = "settled" if charge.outcome == Outcome.OK or charge.cost > 0 or charge.units > 0 else "released"
    applied = await run(
        _postgres.SETTLE_HELD,
        {
            "request_id": request_id,
            "state": state,
            "now": now,
            "day": now.date(),
            "node_id": charge.node_id,
            "cost": charge.cost,
            "units": charge.units,
            "prompt_tokens": charge.prompt_tokens,
            "completion_tokens": charge.completion_tokens,
            "latency_ms": min(charge.latency_ms, _MAX_LATENCY_MS),
            "outcome": charge.outcome,
            "billable": charge.billable,
            "user_id": user_id,
        },
    )
    return None if applied is None else Settlement(state, applied.cost, applied.used)


async def release(session: Executor, request_id: str, outcome: str, *, node_id: str | None = None) -> Settlement | None:
    """Settle with nothing charged (the node produced nothing)."""
    return await settle(session, request_id, Charge(outcome=outcome, node_id=node_id))


async def settle_late(
    session: Executor, request_id: str, charge: Charge, *, now: datetime | None = None
) -> Settlement | None:
    """Settle a request whose reservation the sweeper expired: at most once, all or nothing (see above).

    Several statements: run it in a transaction.
    """
    now = now or utcnow()
    row = (
        await session.execute(
            update(reservations)
            .where(reservations.c.request_id == request_id, reservations.c.state == "expired")
            .values(state="settled", finished_at=now, node_id=func.coalesce(charge.node_id, reservations.c.node_id))
            .returning(reservations.c.user_id, reservations.c.model, reservations.c.stack_id)
        )
    ).first()
    if row is None:
        return None
    cost = units = 0
    if row.stack_id is not None:
        taken = await session.execute(
            update(stacks)
            .where(
                stacks.c.id == row.stack_id,
                stacks.c.total_units - stacks.c.used_units - stacks.c.reserved_units >= charge.units,
            )
            .values(used_units=stacks.c.used_units + charge.units)
        )
        units = charge.units if rowcount(taken) == 1 else 0
    else:
        taken = await session.execute(
            update(balances)
            .where(
                balances.c.user_id == row.user_id,
                balances.c.credited - balances.c.debited - balances.c.reserved >= charge.cost,
            )
            .values(debited=balances.c.debited + charge.cost)
        )
        cost = charge.cost if rowcount(taken) == 1 else 0
    await session.execute(
        update(usage_records)
        .where(usage_records.c.request_id == request_id)
        .values(
            node_id=func.coalesce(charge.node_id, usage_records.c.node_id),
            prompt_tokens=charge.prompt_tokens,
            completion_tokens=charge.completion_tokens,
            cost=cost,
            stack_units=units,
            latency_ms=charge.latency_ms,
            outcome=charge.outcome,
        )
    )
    await _add_daily(session, row.user_id, row.model, charge, cost, now)
    return Settlement("settled", cost, units, late=True)


def _usage_values(request_id: str, row: Row, charge: Charge, cost: int, units: int, now: datetime) -> dict[str, object]:
    return {
        "request_id": request_id,
        "user_id": row.user_id,
        "api_key_id": row.api_key_id,
        "model": row.model,
        "node_id": row.node_id,
        "prompt_tokens": charge.prompt_tokens,
        "completion_tokens": charge.completion_tokens,
        "cost": cost,
        "stack_id": row.stack_id,
        "stack_units": units,
        "latency_ms": min(charge.latency_ms, _MAX_LATENCY_MS),
        "outcome": charge.outcome,
        "created_at": now,
    }


async def _add_daily(session: Executor, user_id: int, model: str, charge: Charge, cost: int, now: datetime) -> None:
    values = {
        "user_id": user_id,
        "day": now.date(),
        "model": model,
        "requests": 1,
        "prompt_tokens": charge.prompt_tokens,
        "completion_tokens": charge.completion_tokens,
        "cost": cost,
    }
    totals = ("requests", "prompt_tokens", "completion_tokens", "cost")
    await session.execute(
        upsert(
            session,
            daily_usage,
            values,
            key=["user_id", "day", "model"],
            update=lambda new: {name: daily_usage.c[name] + new[name] for name in totals},
        )
    )


async def sweep_expired(session: Executor, *, now: datetime | None = None, limit: int = 500) -> int:
    """Expire up to `limit` held reservations past their `expires_at`; returns how many this call expired."""
    now = now or utcnow()
    due = (
        select(reservations.c.id)
        .where(and_(reservations.c.state == "held", reservations.c.expires_at < now))
        .order_by(reservations.c.id)
        .limit(limit)
    )
    if is_postgresql(session):
        due = due.with_for_update(skip_locked=True)
    rows = (
        await session.execute(
            update(reservations)
            .where(reservations.c.id.in_(due), reservations.c.state == "held")
            .values(state="expired", finished_at=now)
            .returning(
                reservations.c.request_id,
                reservations.c.user_id,
                reservations.c.api_key_id,
                reservations.c.model,
                reservations.c.node_id,
                reservations.c.amount,
                reservations.c.stack_id,
                reservations.c.units,
            )
        )
    ).all()
    if not rows:
        return 0
    held_money: dict[int, int] = defaultdict(int)
    held_units: dict[int, int] = defaultdict(int)
    for row in rows:
        if row.amount:
            held_money[row.user_id] += row.amount
        if row.stack_id is not None:
            held_units[row.stack_id] += row.units
    for user_id in sorted(held_money):
        await session.execute(
            update(balances)
            .where(balances.c.user_id == user_id)
            .values(reserved=balances.c.reserved - held_money[user_id])
        )
    for stack_id in sorted(held_units):
        await session.execute(
            update(stacks)
            .where(stacks.c.id == stack_id)
            .values(reserved_units=stacks.c.reserved_units - held_units[stack_id])
        )
    expired = Charge(outcome=Outcome.EXPIRED)
    await session.execute(
        insert(usage_records), [_usage_values(row.request_id, row, expired, 0, 0, now) for row in rows]
    )
    return len(rows)
