"""Atoma's chain events applied to the `sui_*` tables, idempotently and in any order (README "Sui").

Each event is recorded in `sui_applied_events` by (transaction digest, index) in the same transaction
as its effect, so a replayed event changes nothing. Effects commute where the chain allows it:
creation and claim fields are set by their own events, flags only turn on (a task's deprecation, a
stack's claim), key material keeps the latest rotation, and a subscription, which can be turned on
and off, keeps the chain position of the event that last set it and ignores older ones.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.persistence.dialects import insert_or_ignore, upsert
from atoma_proxy.core.persistence.sui_models import (
    SuiAppliedEvent,
    SuiKeyRotation,
    SuiNode,
    SuiNodePublicKey,
    SuiNodeSubscription,
    SuiStack,
    SuiTask,
)
from atoma_proxy.core.sui.chain import ChainEvent
from atoma_proxy.sui.crypto import normalize_address

__all__ = ["HANDLED_EVENTS", "InvalidEvent", "apply_event", "u64_field"]

_U64_MAX = 2**64 - 1
_BIGINT_MAX = 2**63 - 1

applied = SuiAppliedEvent.__table__
nodes = SuiNode.__table__
tasks = SuiTask.__table__
subscriptions = SuiNodeSubscription.__table__
stacks = SuiStack.__table__
rotations = SuiKeyRotation.__table__
public_keys = SuiNodePublicKey.__table__


class InvalidEvent(ValueError):
    """An Atoma event whose fields are missing or out of range: skipped, and logged by the caller."""


def u64_field(fields: dict[str, Any], name: str, *, bigint: bool = True) -> int:
    value = fields.get(name)
    if isinstance(value, dict) and "inner" in value:  # NodeSmallId, TaskSmallId, StackSmallId, ...
        value = value["inner"]
    try:
        number = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    limit = _BIGINT_MAX if bigint else _U64_MAX
    if number is None or not 0 <= number <= limit:
        raise InvalidEvent(f"field {name!r} is not a u64 in range: {value!r}")
    return number


def _optional_u64(fields: dict[str, Any], name: str) -> int | None:
    return None if fields.get(name) is None else u64_field(fields, name)


def _address(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    try:
        return normalize_address(value) if isinstance(value, str) else _missing(name)
    except ValueError:
        raise InvalidEvent(f"field {name!r} is not an address: {value!r}") from None


def _missing(name: str) -> str:
    raise InvalidEvent(f"field {name!r} is missing")


def _base64(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, str):
        try:
            base64.b64decode(value, validate=True)
            return value
        except (binascii.Error, ValueError):
            pass
    raise InvalidEvent(f"field {name!r} is not bytes: {value!r}"[:200])


async def _node_registered(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "node_small_id": u64_field(fields, "node_small_id"),
        "sui_address": normalize_address(event.sender),
        "badge_id": _address(fields, "badge_id"),
    }
    await session.execute(
        upsert(session, nodes, values, key=["node_small_id"], where=lambda _: nodes.c.sui_address.is_(None))
    )


async def _subscription(session: AsyncSession, event: ChainEvent, *, valid: bool) -> None:
    fields = event.json
    values: dict[str, Any] = {
        "node_small_id": u64_field(fields, "node_small_id"),
        "task_small_id": u64_field(fields, "task_small_id"),
        "valid": valid,
        "position": event.position,
        "price_per_one_million_compute_units": u64_field(fields, "price_per_one_million_compute_units") if valid else 0,
        "max_num_compute_units": u64_field(fields, "max_num_compute_units") if valid else 0,
    }
    update = ["valid", "position"]
    if valid:  # an unsubscription keeps the last price it had, for the record
        update += ["price_per_one_million_compute_units", "max_num_compute_units"]
    await session.execute(
        upsert(
            session,
            subscriptions,
            values,
            key=["node_small_id", "task_small_id"],
            update=update,
            where=lambda new: subscriptions.c.position < new.position,
        )
    )


async def _subscribed(session: AsyncSession, event: ChainEvent) -> None:
    await _subscription(session, event, valid=True)


async def _unsubscribed(session: AsyncSession, event: ChainEvent) -> None:
    await _subscription(session, event, valid=False)


async def _task_registered(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    model = fields.get("model_name")
    values = {
        "task_small_id": u64_field(fields, "task_small_id"),
        "task_id": _address(fields, "task_id"),
        "model_name": model if isinstance(model, str) and model else None,
        "role": u64_field(fields, "role"),
        "security_level": u64_field(fields, "security_level"),
        "valid_until_epoch": _optional_u64(fields, "valid_until_epoch"),
    }
    await session.execute(upsert(session, tasks, values, key=["task_small_id"]))  # never is_deprecated


async def _task_deprecated(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "task_small_id": u64_field(fields, "task_small_id"),
        "is_deprecated": True,
        "deprecated_at_epoch": u64_field(fields, "epoch"),
    }
    await session.execute(upsert(session, tasks, values, key=["task_small_id"]))


async def _stack_created(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "stack_small_id": u64_field(fields, "stack_small_id"),
        "stack_id": _address(fields, "stack_id"),
        "owner": _address(fields, "owner"),
        "task_small_id": u64_field(fields, "task_small_id"),
        "selected_node_id": u64_field(fields, "selected_node_id"),
        "num_compute_units": u64_field(fields, "num_compute_units"),
        "price_per_one_million_compute_units": u64_field(fields, "price_per_one_million_compute_units"),
        "created_digest": event.tx_digest,
    }
    await session.execute(upsert(session, stacks, values, key=["stack_small_id"]))


async def _stack_settling(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "stack_small_id": u64_field(fields, "stack_small_id"),
        "in_settle_period": True,
        "num_claimed_compute_units": _optional_u64(fields, "num_claimed_compute_units"),
    }
    await session.execute(
        upsert(
            session,
            stacks,
            values,
            key=["stack_small_id"],
            # A claim already seen (events out of order) ends the settlement period for good.
            update=lambda new: {
                "in_settle_period": ~stacks.c.is_claimed,
                "num_claimed_compute_units": new.num_claimed_compute_units,
            },
        )
    )


async def _stack_claimed(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "stack_small_id": u64_field(fields, "stack_small_id"),
        "is_claimed": True,
        "in_settle_period": False,
        "num_claimed_compute_units": u64_field(fields, "num_claimed_compute_units"),
        "user_refund_amount": u64_field(fields, "user_refund_amount"),
    }
    await session.execute(upsert(session, stacks, values, key=["stack_small_id"]))


async def _key_rotation(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "key_rotation_counter": u64_field(fields, "key_rotation_counter"),
        "epoch": u64_field(fields, "epoch"),
        "nonce": str(u64_field(fields, "nonce", bigint=False)),
    }
    await session.execute(insert_or_ignore(session, rotations, values, key=["key_rotation_counter"]))


async def _public_key_commitment(session: AsyncSession, event: ChainEvent) -> None:
    fields = event.json
    values = {
        "node_small_id": u64_field(fields, "node_id"),
        "device_type": u64_field(fields, "device_type"),
        "epoch": u64_field(fields, "epoch"),
        "key_rotation_counter": u64_field(fields, "key_rotation_counter"),
        "public_key": _base64(fields, "public_key"),
        "evidence_bytes": _base64(fields, "evidence_bytes"),
    }
    await session.execute(
        upsert(
            session,
            public_keys,
            values,
            key=["node_small_id", "device_type"],
            where=lambda new: public_keys.c.key_rotation_counter < new.key_rotation_counter,
        )
    )


Handler = Callable[[AsyncSession, ChainEvent], Awaitable[None]]

HANDLED_EVENTS: dict[str, Handler] = {
    "NodeRegisteredEvent": _node_registered,
    "NodeSubscribedToTaskEvent": _subscribed,
    "NodeSubscriptionUpdatedEvent": _subscribed,
    "NodeUnsubscribedFromTaskEvent": _unsubscribed,
    "TaskRegisteredEvent": _task_registered,
    "TaskDeprecationEvent": _task_deprecated,
    "StackCreatedEvent": _stack_created,
    "StackTrySettleEvent": _stack_settling,
    "StackSettlementTicketEvent": _stack_settling,
    "StackSettlementTicketClaimedEvent": _stack_claimed,
    "NewKeyRotationEvent": _key_rotation,
    "NodePublicKeyCommittmentEvent": _public_key_commitment,
}


async def apply_event(session: AsyncSession, event: ChainEvent) -> bool:
    """Apply one event in the caller's transaction; False when it was applied before (or is not Atoma's).

    InvalidEvent when its fields are unusable: the caller records it as seen and moves on.
    """
    handler = HANDLED_EVENTS.get(event.name)
    values = {"tx_digest": event.tx_digest, "event_seq": event.seq, "event_type": event.type[:255]}
    inserted = await session.execute(
        insert_or_ignore(session, applied, values, key=["tx_digest", "event_seq"]).returning(applied.c.tx_digest)
    )
    if inserted.first() is None:
        return False
    if handler is None:
        return False
    await handler(session, event)
    return True
