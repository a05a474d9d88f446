"""Stacks bought on the loopback chain: the transaction is built, signed and submitted, its StackCreated
event confirms the stack, the ledger shows it once; a failed transaction refunds."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import base58
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core import ledger
from atoma_proxy.core.errors import InsufficientFunds, NodeFailed
from atoma_proxy.core.persistence.ledger_models import Stack
from atoma_proxy.core.persistence.models import User
from atoma_proxy.core.persistence.sui_models import SuiStack, SuiStackPurchase
from atoma_proxy.core.sui.chain import GraphQLChainClient
from atoma_proxy.core.sui.deposits import usdc_coin_type
from atoma_proxy.core.sui.ingest import EventIngestor
from atoma_proxy.core.sui.stacks import STACK_SIZE, ChainStackBuyer, StackSettings
from atoma_proxy.sui.crypto import SuiKeypair, verify_hashed
from atoma_proxy.sui.transactions import decode_move_call, transaction_digest
from tests.core.sui.conftest import PACKAGE, PROXY_KEY, USDC_PACKAGE
from tests.support.sui_chain import RunningChain

Sessions = async_sessionmaker[AsyncSession]
MODEL = "meta-llama/Llama-3.3-70B-Instruct"
ATOMA_DB = "0x741693fc00dd8a46b6509c0c3dc6a095f325b8766e96f01ba73b668df218f859"
PROXY = SuiKeypair.from_keystring(PROXY_KEY)
USDC = usdc_coin_type(USDC_PACKAGE)
PRICE = 400_000  # node 2's price per million for task 1, the cheapest: a 1M-unit stack costs 0.4 USD


def _chain_answers(status: str, seen: list[dict[str, Any]]) -> Callable[[str, list[str]], dict[str, Any]]:
    """An executor that checks the transaction like a validator would (signature, sender) and answers."""

    def execute(tx_b64: str, signatures: list[str]) -> dict[str, Any]:
        tx = base64.b64decode(tx_b64)
        sender, package, function, inputs = decode_move_call(tx)
        (signature,) = signatures
        assert verify_hashed(signature, transaction_digest(tx), signer=sender).signer == PROXY.address
        pure = [int.from_bytes(bytes(arg.value), "little") for arg in inputs if arg.enum_name == "Pure"]
        seen.append({"sender": sender, "package": package, "function": function, "pure": pure})
        digest = base58.b58encode(hashlib.blake2b(tx, digest_size=32).digest()).decode()
        events = []
        if status == "SUCCESS":
            json = {
                "owner": sender,
                "stack_id": "0x" + hashlib.blake2b(b"stack-8", digest_size=32).hexdigest(),
                "stack_small_id": {"inner": str(8 + len(seen))},
                "task_small_id": {"inner": str(pure[0])},
                "selected_node_id": {"inner": "2"},
                "num_compute_units": str(pure[1]),
                "price_per_one_million_compute_units": str(pure[2]),
            }
            events.append(
                {
                    "sequenceNumber": 0,
                    "timestamp": "2025-08-26T11:00:00.000Z",
                    "sender": {"address": sender},
                    "contents": {"type": {"repr": f"{PACKAGE}::db::StackCreatedEvent"}, "json": json},
                }
            )
        return {
            "digest": digest,
            "sender": {"address": sender},
            "effects": {
                "status": status,
                "timestamp": "2025-08-26T11:00:00.000Z",
                "executionError": None
                if status == "SUCCESS"
                else {"message": "MoveAbort in 1st command, abort code: 5"},
                "balanceChanges": {"nodes": []},
                "events": {"nodes": events},
            },
        }

    return execute


async def _setup(sessions: Sessions, chain: GraphQLChainClient) -> int:
    ingestor = EventIngestor(chain, sessions, PACKAGE)
    while (await ingestor.poll_once()).has_more:
        pass
    async with sessions() as session, session.begin():
        user = User(email="stacks@example.com")
        session.add(user)
        await session.flush()
        await ledger.credit(session, user_id=user.id, amount=1_000_000, idempotency_key=f"seed-{user.id}")
        return user.id


def _buyer(sessions: Sessions, chain: GraphQLChainClient) -> ChainStackBuyer:
    return ChainStackBuyer(sessions, chain, PROXY, StackSettings(PACKAGE, ATOMA_DB, USDC))


async def _state(sessions: Sessions, user: int) -> tuple[int, int, list[str]]:
    async with sessions() as session:
        balance = await ledger.get_balance(session, user)
        stacks = (await session.execute(select(func.count()).select_from(Stack))).scalar()
        states = list((await session.execute(select(SuiStackPurchase.state).order_by(SuiStackPurchase.id))).scalars())
    return balance.available, stacks, states


async def test_a_stack_bought_on_chain_is_confirmed_by_its_event_once(
    sessions: Sessions, chain: GraphQLChainClient, running_chain: RunningChain
) -> None:
    user = await _setup(sessions, chain)
    seen: list[dict[str, Any]] = []
    running_chain.chain.on_execute = _chain_answers("SUCCESS", seen)
    stack = await _buyer(sessions, chain).buy(user, MODEL)
    assert seen == [
        {
            "sender": PROXY.address,
            "package": PACKAGE,
            "function": "db::acquire_new_stack_entry",
            "pure": [1, STACK_SIZE, PRICE],
        }
    ]
    assert (stack.node_id, stack.model, stack.total_units, stack.price_paid) == ("sui-2", MODEL, STACK_SIZE, PRICE)
    assert await _state(sessions, user) == (1_000_000 - PRICE, 1, ["confirmed"])
    # The event follower reads the same StackCreated event later: nothing changes.
    ingestor = EventIngestor(chain, sessions, PACKAGE)
    assert (await ingestor.poll_once()).applied == 0
    assert await _state(sessions, user) == (1_000_000 - PRICE, 1, ["confirmed"])
    async with sessions() as session:
        row = await session.get(SuiStack, 9)
        assert row is not None and (row.owner, row.selected_node_id, row.num_compute_units) == (
            PROXY.address,
            2,
            STACK_SIZE,
        )


@pytest.mark.parametrize("script", ["FAILURE", None])
async def test_a_failed_transaction_refunds(
    sessions: Sessions, chain: GraphQLChainClient, running_chain: RunningChain, script: str | None
) -> None:
    user = await _setup(sessions, chain)
    running_chain.chain.on_execute = _chain_answers(script, []) if script else None  # None: the RPC refuses it
    with pytest.raises(NodeFailed) as caught:
        await _buyer(sessions, chain).buy(user, MODEL)
    assert caught.value.reason == "STACK_PURCHASE_FAILED"
    assert await _state(sessions, user) == (1_000_000, 0, ["refunded"])
    assert running_chain.chain.executed  # it was submitted


async def test_the_price_is_taken_before_anything_is_submitted(
    sessions: Sessions, chain: GraphQLChainClient, running_chain: RunningChain
) -> None:
    user = await _setup(sessions, chain)
    async with sessions() as session, session.begin():
        await ledger.credit(session, user_id=user, amount=1, idempotency_key="tiny")  # still short for two stacks
    running_chain.chain.on_execute = _chain_answers("SUCCESS", [])
    buyer = _buyer(sessions, chain)
    await buyer.buy(user, MODEL)
    await buyer.buy(user, MODEL)
    with pytest.raises(InsufficientFunds):
        await buyer.buy(user, MODEL)
    assert len(running_chain.chain.executed) == 2
    assert await _state(sessions, user) == (1_000_001 - 2 * PRICE, 2, ["confirmed", "confirmed"])
