"""Outages of what the proxy stands on, with a PostgreSQL and a Redis of the test's own (README "Outages").

PostgreSQL stopped under load: every request gets a 200 or, at once, a 503 `database_unavailable` (never
a 500, never a wait until the deadline); no node is called for a request that was not reserved; every
answer given is in the ledger once the database is back (the settlements of requests served during the
outage included); the proxy recovers by itself. PostgreSQL hung (SIGSTOP): the same 503 within the
configured timeouts. Redis stopped: the `fail_open` rule holds while it is
down, and the limits apply again by themselves once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from atoma_proxy.core.persistence.migrate import upgrade_database
from tests.support.services import OwnPostgres, OwnRedis, own_postgres, own_redis
from tests.support.stack import IN_PROCESS, SimNode, Stack, StackFactory, Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]  # up to 45 s each when the machine is busy

CHAT = "atoma/sim-chat"
ADMIN_TOKEN = "outage-admin-token-0123456789"
# A client that waited for the deadline would time out long before it: "at once" means well within this.
CLIENT_TIMEOUT = 30.0
REQUEST_DEADLINE = 300.0
POLL_ATTEMPTS, POLL_INTERVAL = 300, 0.1
NODE = SimNode("node", chat=(CHAT,), options=("--tokens-per-second", "200"), prices=(100_000, 400_000))
SETTINGS: dict[str, dict[str, object]] = {
    "ledger": {"sweep_interval": 0.5},
    "database": {"statement_timeout": 2.0},
}


def _proxy(
    stack_factory: StackFactory, database_url: str | None = None, **settings: dict[str, object]
) -> contextlib.AbstractContextManager[Stack]:
    """The proxy in one process on `database_url` (else a fresh SQLite database), a funded key, one node."""
    return stack_factory(
        Topology(IN_PROCESS, "postgresql" if database_url else "sqlite"),
        nodes=[NODE],
        settings=SETTINGS | settings,
        sim_words=(CHAT,),
        env={"ATOMA_FACADE__REQUEST_TIMEOUT": str(REQUEST_DEADLINE), "ATOMA_ACCOUNTS__ADMIN_TOKEN": ADMIN_TOKEN},
        funds=10**9,
        database_url=database_url,
    )


@pytest.fixture
async def postgres() -> AsyncIterator[tuple[OwnPostgres, str]]:
    with own_postgres() as server:
        url = server.create_database("atoma")
        await upgrade_database(url)
        yield server, url


async def _chat(client: httpx.AsyncClient, *, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    if stream:
        body["stream"] = True
    return await client.post("/v1/chat/completions", json=body)


async def _until_ok(client: httpx.AsyncClient) -> httpx.Response:
    for _ in range(POLL_ATTEMPTS):
        response = await _chat(client)
        if response.status_code == 200:
            return response
        await asyncio.sleep(POLL_INTERVAL)
    raise AssertionError(f"the proxy never recovered: {response.status_code} {response.text}")


def _ledger(database_url: str, request_ids: list[str]) -> tuple[dict[str, tuple[str, int]], int, int, int]:
    """(request id -> (outcome, cost)) of these requests, held reservations, debited, reserved."""
    with psycopg.connect(database_url) as connection:
        records = dict(
            (row[0], (row[1], row[2]))
            for row in connection.execute(
                "SELECT request_id, outcome, cost FROM usage_records WHERE request_id = ANY(%s)", (request_ids,)
            )
        )
        held = connection.execute("SELECT count(*) FROM reservations WHERE state = 'held'").fetchone()
        debited, reserved = connection.execute("SELECT sum(debited), sum(reserved) FROM balances").fetchone()  # type: ignore[misc]
        costs = connection.execute("SELECT coalesce(sum(cost), 0) FROM usage_records").fetchone()
    assert held is not None and costs is not None
    assert debited == costs[0], "debited differs from the usage records' costs"
    return records, held[0], debited, reserved


async def test_postgres_stopped_under_load_is_a_503_at_once_and_every_answer_is_metered_when_it_is_back(
    stack_factory: StackFactory, postgres: tuple[OwnPostgres, str]
) -> None:
    server, database_url = postgres
    responses: list[httpx.Response] = []
    stopping = asyncio.Event()

    with _proxy(stack_factory, database_url) as proxy:
        headers = {"authorization": f"Bearer {proxy.api_key}"}
        async with httpx.AsyncClient(base_url=proxy.facade_url, headers=headers, timeout=CLIENT_TIMEOUT) as client:

            async def load(stream: bool) -> None:
                while not stopping.is_set():
                    response = await _chat(client, stream=stream)
                    responses.append(response)
                    if response.status_code != 200:
                        await asyncio.sleep(0.02)

            workers = [asyncio.create_task(load(stream=i % 2 == 1)) for i in range(6)]
            await asyncio.sleep(1.0)
            # A long stream reserved before the outage and answered during it: settled once the database is back.
            long_body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 300}
            async with client.stream("POST", "/v1/chat/completions", json={**long_body, "stream": True}) as long:
                chunks = long.aiter_bytes()
                first = await anext(chunks)
                await asyncio.to_thread(server.stop, "fast")
                rest = b"".join([chunk async for chunk in chunks])
            responses.append(long)
            during = [await _chat(client) for _ in range(5)]
            admin = await client.get("/v1/admin/users/1/balance", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            after = await _until_ok(client)
            await asyncio.sleep(0.5)
            stopping.set()
            await asyncio.gather(*workers)
            node_stats = (await client.get(f"{proxy.nodes['node']}/sim/stats")).json()

        answered = [r for r in [*responses, after] if r.status_code == 200]
        request_ids = [r.headers["x-request-id"] for r in answered]
        for _ in range(POLL_ATTEMPTS):  # the settlements of the outage complete once the database is back
            records, held, _, reserved = await asyncio.to_thread(_ledger, database_url, request_ids)
            if len(records) == len(request_ids) and held == 0:
                break
            await asyncio.sleep(POLL_INTERVAL)

    assert long.status_code == 200 and b"[DONE]" in first + rest and b'"error"' not in first + rest
    assert records[long.headers["x-request-id"]][1] > 0
    refused = [r for r in [*responses, *during, admin] if r.status_code != 200]
    assert {r.status_code for r in refused} == {503}, {r.status_code: r.text for r in refused}
    assert {r.json()["error"]["code"] for r in refused} == {"database_unavailable"}
    assert all(r.headers.get("retry-after") == "1" for r in refused)
    assert all(r.status_code == 503 for r in during) and admin.status_code == 503
    # Nothing unmetered: the node served exactly the requests that were answered, and each is in the ledger.
    assert node_stats["requests_total"] == len(answered)
    assert set(records) == set(request_ids)
    assert all(outcome == "ok" and cost > 0 for outcome, cost in records.values())
    assert (held, reserved) == (0, 0)


async def test_a_hung_postgres_is_a_503_within_the_statement_timeout_not_at_the_deadline(
    stack_factory: StackFactory, postgres: tuple[OwnPostgres, str]
) -> None:
    """SIGSTOP: connections hang instead of failing. The waits are bounded (`database.*_timeout`, 2 s here)
    where the request's deadline is 300 s and the client gives up after 30 s."""
    server, database_url = postgres
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with _proxy(stack_factory, database_url) as proxy:
        headers = {"authorization": f"Bearer {proxy.api_key}"}
        async with httpx.AsyncClient(base_url=proxy.facade_url, headers=headers, timeout=CLIENT_TIMEOUT) as client:
            warm = await _chat(client)
            server.freeze()
            try:
                hung = await asyncio.gather(*(_chat(client) for _ in range(4)))
                await asyncio.sleep(1.1)  # past the key cache: the key check waits on the hung database too
                hung += await asyncio.gather(_chat(client), client.get("/v1/admin/users/1/balance", headers=admin))
            finally:
                server.thaw()
            after = await _until_ok(client)
            balance = await client.get("/v1/admin/users/1/balance", headers=admin)

    assert warm.status_code == after.status_code == balance.status_code == 200
    assert [(r.status_code, r.json()["error"]["code"]) for r in hung] == [(503, "database_unavailable")] * 6


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail_open", "fail_closed"])
async def test_redis_stopped_follows_the_fail_open_rule_and_limits_apply_again_when_it_is_back(
    stack_factory: StackFactory, fail_open: bool
) -> None:
    with own_redis() as redis:
        async with _limited_proxy(stack_factory, redis, fail_open) as client:
            before = [(await _chat(client)).status_code for _ in range(3)]
            redis.stop()
            down = [await _chat(client) for _ in range(4)]
            redis.start()
            recovery: list[int] = []
            for _ in range(POLL_ATTEMPTS):  # Redis is retried a second after a failure
                again = await _chat(client)
                recovery.append(again.status_code)
                if again.status_code == 429 and "x-ratelimit-limit-requests" in again.headers:
                    break  # refused by the limit itself (a fail-closed refusal has no bucket to report)
                await asyncio.sleep(POLL_INTERVAL)

    assert before == [200, 200, 429]  # a limit of 2 requests per minute
    if fail_open:
        assert [r.status_code for r in down] == [200] * 4
    else:
        assert [r.status_code for r in down] == [429] * 4
        assert all(r.headers["retry-after"] == "1" for r in down)
    # Back by itself: the (fresh) bucket admits 2 requests again, then its limit refuses the next.
    assert recovery[-3:] == [200, 200, 429] and again.json()["error"]["code"] == "rate_limit_exceeded"
    assert again.headers["x-ratelimit-remaining-requests"] == "0"


@contextlib.asynccontextmanager
async def _limited_proxy(
    stack_factory: StackFactory, redis: OwnRedis, fail_open: bool
) -> AsyncIterator[httpx.AsyncClient]:
    limits = {"redis_url": redis.url, "key_requests_per_minute": 2, "fail_open": fail_open}
    with _proxy(stack_factory, rate_limits=limits) as proxy:  # SQLite: this test needs no PostgreSQL of its own
        headers = {"authorization": f"Bearer {proxy.api_key}"}
        async with httpx.AsyncClient(base_url=proxy.facade_url, headers=headers, timeout=CLIENT_TIMEOUT) as client:
            yield client
