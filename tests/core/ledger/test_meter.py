"""The Meter: what a request is reserved and charged in each way it can end, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.config import LedgerSettings
from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import InsufficientFunds, ModelNotFound
from atoma_proxy.core.ledger import (
    Balance,
    Charge,
    Meter,
    MeteredRequest,
    Outcome,
    RequestKind,
    Served,
    Tokenizers,
    buy_stack,
    credit,
    get_balance,
    list_stacks,
    list_usage,
    set_user_model_price,
)
from atoma_proxy.core.ledger.token_counting import SimWordsCounter
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.persistence.ledger_models import Reservation
from atoma_proxy.core.pipeline.call import InferenceCall
from tests.core.ledger.conftest import NewUser

Sessions = async_sessionmaker[AsyncSession]
MODEL = "atoma/sim-chat"
# "hello world": 3 per message + 3 priming + 2 words = 8 prompt tokens under the simulator's rule.
BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 10}
PROMPT = 8


def _registry() -> NodeRegistry:
    return NodeRegistry(
        [
            Node("cheap", "http://cheap", frozenset({MODEL, "img"}), 1_000_000, 2_000_000, price_per_image=400),
            Node("dear", "http://dear", frozenset({MODEL, "img"}), 3_000_000, 5_000_000, price_per_image=900),
        ]
    )


async def _reserve(
    meter: Meter,
    principal: Principal,
    call: InferenceCall,
    kind: RequestKind,
    model: str,
    body: dict[str, Any],
    *,
    deadline: float | None,
) -> MeteredRequest | None:
    """Reserve for `body` as the pipeline does: its estimate, then the hold; the call learns its id and pin."""
    metered = await meter.reserve(
        principal, call.request_id, model, meter.estimate(kind, model, body), deadline=deadline
    )
    if metered is not None:
        call.request_id = metered.request_id
        if metered.stack_context is not None:
            call.pinned_node_id = metered.hold.node_id
            call.node_context = metered.stack_context
    return metered


async def _settle(meter: Meter, metered: MeteredRequest | None, call: InferenceCall, outcome: str) -> int:
    return await meter.settle(metered, outcome, Served(call.node, call.usage, call.delivered))


def _charge(meter: Meter, metered: MeteredRequest, call: InferenceCall, outcome: str) -> Charge:
    return meter.charge(metered, outcome, Served(call.node, call.usage, call.delivered))


MakeMeter = Callable[..., Meter]


@pytest.fixture
async def make_meter(engine: AsyncEngine) -> AsyncIterator[MakeMeter]:
    """Meters on the test database (closed afterwards: on PostgreSQL each has a connection pool)."""
    meters: list[Meter] = []

    def make(registry: NodeRegistry | None = None, **settings: Any) -> Meter:
        meter = Meter(
            # The settlement is awaited (the tests read the ledger right after) unless a test asks otherwise.
            LedgerSettings(price_cache_ttl=0, **{"answer_before_settlement": False, **settings}),
            engine,
            registry or _registry(),
            Tokenizers({MODEL: SimWordsCounter()}),
            instance_id="test",
        )
        meters.append(meter)
        return meter

    yield make
    for meter in meters:
        await meter.aclose()


async def _funded(sessions: Sessions, new_user: NewUser, amount: int) -> Principal:
    user = await new_user()
    async with sessions() as session, session.begin():
        await credit(session, user_id=user, amount=amount, idempotency_key=f"meter-{user}")
    return Principal(user_id=user, api_key_id=None)  # type: ignore[arg-type]


async def _balance(sessions: Sessions, user: int) -> Balance:
    async with sessions() as session:
        return await get_balance(session, user)


def _served(call: InferenceCall, registry: NodeRegistry, node_id: str, usage: dict[str, int] | None = None) -> None:
    call.node = registry.get(node_id)
    call.usage = usage


async def test_reserve_holds_the_maximum_at_the_highest_price_and_settles_at_the_serving_one(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 1_000)
    call = InferenceCall(request_id=f"r-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert metered is not None
    # 8 prompt tokens at 3/token (the dearest input) + 10 output at 5/token (the dearest output).
    assert metered.hold.amount == 8 * 3 + 10 * 5
    assert await _balance(sessions, principal.user_id) == Balance(1_000, 0, 74, 926)
    _served(call, registry, "cheap", {"prompt_tokens": PROMPT, "completion_tokens": 6})
    assert await _settle(meter, metered, call, Outcome.OK) == 8 * 1 + 6 * 2
    assert await _settle(meter, metered, call, Outcome.CLIENT_CANCELLED) == 20  # once only
    assert await _balance(sessions, principal.user_id) == Balance(1_000, 20, 0, 980)


async def test_a_request_that_cannot_be_covered_is_refused_before_anything_is_held(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    meter = make_meter()
    principal = await _funded(sessions, new_user, 73)
    with pytest.raises(InsufficientFunds):
        await _reserve(
            meter, principal, InferenceCall(request_id="poor"), RequestKind.CHAT, MODEL, dict(BODY), deadline=5
        )
    with pytest.raises(ModelNotFound):
        await _reserve(
            meter, principal, InferenceCall(request_id="nope"), RequestKind.CHAT, "nope", dict(BODY), deadline=5
        )
    assert await _balance(sessions, principal.user_id) == Balance(73, 0, 0, 73)


async def test_a_cancelled_stream_pays_for_the_prompt_and_the_tokens_relayed(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 1_000)
    call = InferenceCall(request_id=f"cut-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert metered is not None
    _served(call, registry, "dear")
    call.delivered = 4
    assert await _settle(meter, metered, call, Outcome.CLIENT_CANCELLED) == 8 * 3 + 4 * 5
    async with sessions() as session:
        (record,) = await list_usage(session, principal.user_id)
    assert (record.prompt_tokens, record.completion_tokens, record.outcome) == (8, 4, "client_cancelled")


async def test_nothing_generated_is_nothing_charged(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 1_000)
    for index, (node_id, outcome) in enumerate([("dear", Outcome.NODE_FAILED), (None, Outcome.NO_NODE)]):
        call = InferenceCall(request_id=f"none-{principal.user_id}-{index}")
        metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
        if node_id:
            _served(call, registry, node_id)
        assert await _settle(meter, metered, call, outcome) == 0
    assert await _balance(sessions, principal.user_id) == Balance(1_000, 0, 0, 1_000)


async def test_charges_follow_the_documented_rules(make_meter: MakeMeter) -> None:
    registry = _registry()
    meter = make_meter(registry)
    from atoma_proxy.core.ledger import Estimate, Hold, MeteredRequest, TokenPrice

    def metered(kind: RequestKind, *, exact: bool = True, stack: bool = False, override: TokenPrice | None = None):  # type: ignore[no-untyped-def]
        estimate = Estimate(kind, prompt_tokens=50, prompt_exact=exact, completion_tokens=100, images=3, output_cap=100)
        hold = Hold("r", 1, None, MODEL, 0 if stack else 10**6, 7 if stack else None, 150 if stack else 0)
        return MeteredRequest(hold, estimate, override, started=0.0)

    def call(usage: dict[str, int] | None = None) -> InferenceCall:
        served = InferenceCall(request_id="r")
        _served(served, registry, "cheap", usage)
        return served

    usage = {"prompt_tokens": 40, "completion_tokens": 9}
    ok = _charge(meter, metered(RequestKind.CHAT), call(usage), Outcome.OK)
    assert (ok.prompt_tokens, ok.completion_tokens, ok.cost) == (40, 9, 40 + 18)
    # Cut short without usage: an inexact prompt is charged at its bound, the exact one as counted.
    rough = metered(RequestKind.CHAT, exact=False)
    cut = call()
    cut.delivered = 2
    assert _charge(meter, rough, cut, Outcome.NODE_FAILED).cost == 50 + 4
    seen = metered(RequestKind.CHAT, exact=False)
    assert _charge(meter, seen, call(usage), Outcome.CLIENT_CANCELLED).cost == 40 + 18  # the node's usage, seen
    # Embeddings: input tokens at the input price; nothing unless the node answered.
    assert _charge(meter, metered(RequestKind.EMBEDDINGS), call({"prompt_tokens": 12}), Outcome.OK).cost == 12
    assert _charge(meter, metered(RequestKind.EMBEDDINGS), call(), Outcome.NODE_FAILED).cost == 0
    # Images: n at the serving node's price per image.
    assert _charge(meter, metered(RequestKind.IMAGES), call(), Outcome.OK).cost == 3 * 400
    assert _charge(meter, metered(RequestKind.IMAGES), call(), Outcome.NODE_TIMEOUT).cost == 0
    # A stack pays in units (tokens), never in money; an override replaces the node's price.
    stacked = _charge(meter, metered(RequestKind.CHAT, stack=True), call(usage), Outcome.OK)
    assert (stacked.cost, stacked.units) == (0, 49)
    priced = _charge(meter, metered(RequestKind.CHAT, override=TokenPrice(10**7, 0)), call(usage), Outcome.OK)
    assert priced.cost == 400


async def test_a_user_price_override_replaces_node_prices_for_reserve_and_settle(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 10_000)
    async with sessions() as session, session.begin():
        await set_user_model_price(
            session, user_id=principal.user_id, model=MODEL, input_per_million=10**7, output_per_million=0
        )
    call = InferenceCall(request_id=f"o-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert metered is not None and metered.hold.amount == 8 * 10
    _served(call, registry, "dear", {"prompt_tokens": 8, "completion_tokens": 10})
    assert await _settle(meter, metered, call, Outcome.OK) == 80


async def test_a_stack_pays_for_its_model_and_pins_the_request_to_its_node(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 1_000)
    async with sessions() as session, session.begin():
        stack = await buy_stack(
            session, user_id=principal.user_id, node_id="dear", model=MODEL, compute_units=30, price_per_million=10**6
        )
    call = InferenceCall(request_id=f"st-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert metered is not None
    assert (metered.hold.stack_id, metered.hold.units, metered.hold.amount) == (stack.id, 18, 0)
    assert call.pinned_node_id == "dear"
    # The stack has 12 units left: the next request pays in money, on any node.
    other = InferenceCall(request_id=f"st2-{principal.user_id}")
    fallback = await _reserve(meter, principal, other, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert fallback is not None and fallback.hold.stack_id is None and other.pinned_node_id is None
    _served(call, registry, "dear", {"prompt_tokens": 8, "completion_tokens": 2})
    assert await _settle(meter, metered, call, Outcome.OK) == 0
    async with sessions() as session:
        (current,) = await list_stacks(session, principal.user_id)
    assert (current.used_units, current.reserved_units) == (10, 0)


async def test_a_request_id_seen_before_gets_a_fresh_one(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    meter = make_meter()
    principal = await _funded(sessions, new_user, 1_000)
    first = InferenceCall(request_id=f"same-{principal.user_id}")
    second = InferenceCall(request_id=f"same-{principal.user_id}")
    await _reserve(meter, principal, first, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    await _reserve(meter, principal, second, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert second.request_id != first.request_id
    async with sessions() as session:
        ids = set(await session.scalars(select(Reservation.request_id).where(Reservation.user_id == principal.user_id)))
    assert ids == {first.request_id, second.request_id}


async def test_settlement_survives_the_cancellation_of_its_caller(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 1_000)
    call = InferenceCall(request_id=f"shield-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    _served(call, registry, "cheap", {"prompt_tokens": 8, "completion_tokens": 10})
    waiter = asyncio.create_task(_settle(meter, metered, call, Outcome.OK))
    await asyncio.sleep(0)  # the settlement task has started
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await meter.drain()
    assert await _balance(sessions, principal.user_id) == Balance(1_000, 28, 0, 972)


async def test_with_answer_before_settlement_the_charge_is_known_before_the_commit(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry, answer_before_settlement=True)
    principal = await _funded(sessions, new_user, 1_000)
    call = InferenceCall(request_id=f"early-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    _served(call, registry, "cheap", {"prompt_tokens": 8, "completion_tokens": 10})
    assert await _settle(meter, metered, call, Outcome.OK) == 28  # the computed charge
    # The answer may leave now: its settlement has not committed yet, it runs on.
    assert any(task.get_name() == f"settle-{call.request_id}" for task in asyncio.all_tasks())
    await meter.drain()
    assert await _balance(sessions, principal.user_id) == Balance(1_000, 28, 0, 972)
    # A failed request still waits for its (refund) settlement.
    failed = InferenceCall(request_id=f"early-failed-{principal.user_id}")
    metered = await _reserve(meter, principal, failed, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert await _settle(meter, metered, failed, Outcome.NO_NODE) == 0
    assert not any(task.get_name() == f"settle-{failed.request_id}" for task in asyncio.all_tasks())
    assert await _balance(sessions, principal.user_id) == Balance(1_000, 28, 0, 972)


async def test_a_disabled_ledger_meters_nothing(make_meter: MakeMeter, sessions: Sessions, new_user: NewUser) -> None:
    meter = make_meter(enabled=False)
    principal = Principal(user_id=await new_user(), api_key_id=None)  # type: ignore[arg-type]
    call = InferenceCall(request_id="off")
    assert await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30) is None
    assert await _settle(meter, None, call, Outcome.OK) == 0


async def test_concurrent_requests_of_one_user_take_exactly_the_money_there_is(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 74 * 10)  # ten reservations of 74

    async def one(index: int) -> int:
        call = InferenceCall(request_id=f"group-{principal.user_id}-{index}")
        metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
        _served(call, registry, "cheap", {"prompt_tokens": PROMPT, "completion_tokens": 6})
        return await _settle(meter, metered, call, Outcome.OK)

    outcomes = await asyncio.gather(*(one(i) for i in range(25)), return_exceptions=True)

    costs = [o for o in outcomes if isinstance(o, int)]
    assert all(isinstance(o, int | InsufficientFunds) for o in outcomes)
    assert len(costs) >= 10 and set(costs) == {20}  # settled ones free 54 each for later ones
    assert await _balance(sessions, principal.user_id) == Balance(740, 20 * len(costs), 0, 740 - 20 * len(costs))
    if meter._writer is not None:  # PostgreSQL: concurrent statements were committed in groups
        assert meter._writer.groups > 0


async def test_a_duplicate_request_id_in_a_group_fails_only_its_own_caller(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser
) -> None:
    meter = make_meter()
    principal = await _funded(sessions, new_user, 10_000)
    calls = [InferenceCall(request_id=f"dup-{principal.user_id}-{i % 3}") for i in range(6)]  # each id twice

    await asyncio.gather(
        *(_reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30) for call in calls)
    )

    assert len({call.request_id for call in calls}) == 6  # the second of each pair got a fresh id
    assert await _balance(sessions, principal.user_id) == Balance(10_000, 0, 6 * 74, 10_000 - 6 * 74)


async def test_a_non_streamed_answer_without_usage_is_charged_for_its_counted_text(make_meter: MakeMeter) -> None:
    """Issue 10.3: the generated text is counted (tokenizer, else its UTF-8 bytes), at most the reservation."""
    meter = make_meter()
    chat = b'{"choices":[{"index":0,"message":{"role":"assistant","content":" one two three"}}]}'
    assert meter.estimator.generated(MODEL, chat) == 3  # the simulator's tokenizer: exact
    completions = b'{"choices":[{"index":0,"text":" a b"},{"index":1,"text":" c"}]}'
    assert meter.estimator.generated(MODEL, completions) == 3
    tools = b'{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"arguments":"{}"}}]}}]}'
    assert meter.estimator.generated("no-tokenizer", tools) == len(b'[{"function":{"arguments":"{}"}}]')
    assert meter.estimator.generated("no-tokenizer", chat) == len(" one two three")  # the byte bound
    assert meter.estimator.generated(MODEL, b"not json") == meter.estimator.generated(MODEL, b"[]") == 0


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 8, "completion_tokens": 2**62},
        {"prompt_tokens": -8, "completion_tokens": 4},
        {"prompt_tokens": "8", "completion_tokens": 4},
        {"prompt_tokens": 8, "completion_tokens": 4.0},
        {"prompt_tokens": True, "completion_tokens": 4},
    ],
)
async def test_absurd_usage_is_never_charged_what_was_delivered_is(
    make_meter: MakeMeter, sessions: Sessions, new_user: NewUser, usage: dict[str, Any]
) -> None:
    """Issue 10.4: the charge falls back to the tokens counted (capped at the reservation), and settles."""
    registry = _registry()
    meter = make_meter(registry)
    principal = await _funded(sessions, new_user, 1_000)
    call = InferenceCall(request_id=f"absurd-{principal.user_id}")
    metered = await _reserve(meter, principal, call, RequestKind.CHAT, MODEL, dict(BODY), deadline=30)
    assert metered is not None
    _served(call, registry, "cheap", usage)
    call.delivered = 4
    assert await _settle(meter, metered, call, Outcome.NODE_FAILED) == 8 * 1 + 4 * 2
    metered_more = await _reserve(
        meter,
        principal,
        InferenceCall(request_id=f"more-{principal.user_id}"),
        RequestKind.CHAT,
        MODEL,
        dict(BODY),
        deadline=30,
    )
    assert metered_more is not None
    more = InferenceCall(request_id=metered_more.hold.request_id)
    _served(more, registry, "cheap")
    more.delivered = 500  # counted past the cap of 10: charged the cap
    assert await _settle(meter, metered_more, more, Outcome.OK) == 8 * 1 + 10 * 2
    async with sessions() as session:
        records = await list_usage(session, principal.user_id)
    assert sorted(r.completion_tokens for r in records) == [4, 10]
