"""The charge in the answer's `usage` (`cost` in USD like OpenRouter, `cost_micro_usd` exact), equal to
what the ledger charged: streamed (the include_usage chunk) and not, chat and Responses."""

from __future__ import annotations

from decimal import Decimal

import openai

from tests.e2e._ledger import funded_key, stored_ledger
from tests.e2e.conftest import CHAT, Stack

MESSAGES = [{"role": "user", "content": "How much does this cost?"}]


async def _client(stack: Stack) -> tuple[str, openai.AsyncOpenAI]:
    email, key = await funded_key(stack.database_url, 10**9)
    return email, openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0)


async def _charged(stack: Stack, email: str) -> int:
    ledger = await stored_ledger(stack.database_url, email)
    [record] = ledger.records
    assert record.cost > 0 and ledger.debited == record.cost
    return record.cost


async def test_stream_usage_chunk_carries_the_ledger_charge(stack: Stack) -> None:
    email, client = await _client(stack)
    async with client as api:
        stream = await api.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=7, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == 7
    charged = await _charged(stack, email)
    assert usage.model_extra["cost_micro_usd"] == charged
    assert Decimal(str(usage.model_extra["cost"])) == Decimal(charged) / 10**6


async def test_non_streamed_usage_and_header_carry_the_ledger_charge(stack: Stack) -> None:
    email, client = await _client(stack)
    async with client as api:
        raw = await api.chat.completions.with_raw_response.create(model=CHAT, messages=MESSAGES, max_tokens=5)
    usage = raw.parse().usage
    charged = await _charged(stack, email)
    assert usage.model_extra["cost_micro_usd"] == charged == int(raw.headers["x-atoma-cost"])
    assert Decimal(str(usage.model_extra["cost"])) == Decimal(charged) / 10**6


async def test_responses_usage_carries_the_ledger_charge(stack: Stack) -> None:
    email, client = await _client(stack)
    async with client as api:
        stream = await api.responses.create(model=CHAT, input="Hi", max_output_tokens=4, stream=True)
        events = [event async for event in stream]
    usage = events[-1].response.usage
    charged = await _charged(stack, email)
    assert usage.model_extra["cost_micro_usd"] == charged
    assert Decimal(str(usage.model_extra["cost"])) == Decimal(charged) / 10**6
