"""GET /v1/admin/usage/stats (AccountAdminService.GetUsageStats) over the facade, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_TOKEN, CHAT, Stack

HOUR = timedelta(hours=1)
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# Metering ends after the answer: 100 x 0.05 s at most.
POLL_ATTEMPTS, POLL_INTERVAL = 100, 0.05


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
        yield client


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def _spending_user(stack: Stack, rest: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """A new user who made one chat request; (user id, its usage record once metered)."""
    email, password = f"stats-{secrets.token_hex(6)}@example.com", secrets.token_urlsafe(12)
    user = (await _ok(await rest.post("/v1/auth/register", json={"email": email, "password": password})))["user"]
    grant = await _ok(await rest.post("/v1/auth/login", json={"email": email, "password": password}))
    credit = {"amount_micro_usd": "1000000", "idempotency_key": f"stats-{user['id']}"}
    await _ok(await rest.post(f"/v1/admin/users/{user['id']}/credits", json=credit, headers=ADMIN))
    token = {"authorization": f"Bearer {grant['access_token']}"}
    key = (await _ok(await rest.post("/v1/api-keys", json={"name": "stats"}, headers=token)))["secret"]
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) as sdk:
        await sdk.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "count me"}])
    for _ in range(POLL_ATTEMPTS):
        records = (await _ok(await rest.get("/v1/usage", headers=token)))["records"]
        if records:
            return user["id"], records[0]
        await asyncio.sleep(POLL_INTERVAL)
    raise AssertionError("the request was never metered")


async def test_usage_stats_count_a_new_users_request_in_the_current_bucket_and_top_users(
    stack: Stack, rest: httpx.AsyncClient
) -> None:
    user_id, record = await _spending_user(stack, rest)
    stats = await _ok(
        await rest.get(
            "/v1/admin/usage/stats",
            params={"bucket_width": "USAGE_BUCKET_WIDTH_HOUR", "bucket_count": 3, "top_users_limit": 100},
            headers=ADMIN,
        )
    )

    starts = [datetime.fromisoformat(b["start_time"].replace("Z", "+00:00")) for b in stats["buckets"]]
    assert len(starts) == 3 and [later - earlier for earlier, later in itertools.pairwise(starts)] == [HOUR, HOUR]
    assert starts[0].minute == starts[0].second == 0 and starts[-1] <= datetime.now(UTC)
    current = stats["buckets"][-1]
    assert int(current["requests"]) >= 1 and int(current["cost_micro_usd"]) >= int(record["cost_micro_usd"]) > 0
    [mine] = [u for u in stats["top_users"] if u["user_id"] == user_id]
    assert (mine["requests"], mine["cost_micro_usd"]) == ("1", record["cost_micro_usd"])
    assert mine["prompt_tokens"] == record["prompt_tokens"] and mine["email"].startswith("stats-")
    spends = [int(u["cost_micro_usd"]) for u in stats["top_users"]]
    assert spends == sorted(spends, reverse=True)


async def test_usage_stats_refuse_bad_bounds_and_callers_without_the_admin_token(rest: httpx.AsyncClient) -> None:
    too_many = await rest.get("/v1/admin/usage/stats", params={"bucket_count": 1001}, headers=ADMIN)
    negative = await rest.get("/v1/admin/usage/stats", params={"top_users_limit": -1}, headers=ADMIN)
    no_token = await rest.get("/v1/admin/usage/stats")
    wrong_token = await rest.get("/v1/admin/usage/stats", headers={"authorization": "Bearer not-the-admin-token"})
    day = await _ok(
        await rest.get("/v1/admin/usage/stats", params={"bucket_width": "USAGE_BUCKET_WIDTH_DAY"}, headers=ADMIN)
    )

    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "bucket_count"
    assert negative.status_code == 400 and negative.json()["error"]["param"] == "top_users_limit"
    assert no_token.status_code == 401 and wrong_token.status_code == 403
    assert len(day["buckets"]) == 24 and day["buckets"][-1]["start_time"].endswith("T00:00:00Z")
