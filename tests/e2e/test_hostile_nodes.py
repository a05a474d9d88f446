"""Hostile nodes, black-box: node simulators that lie in /metrics, answer garbage or never end an event.

Its own stack (SQLite, the ledger on, small node limits: 1 MiB per event, 4 MiB per answer;
ejection effectively off so that every request reaches the hostile node). Assertions are on
statuses, error codes, who served what and what was charged, never on durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e._ledger import funded_key, stored_ledger
from tests.support.stack import IN_PROCESS, SimNode, Stack, StackFactory, Topology

CHAT = "atoma/hostile-chat"  # honest (cheap) and liar (ten times the price, lying about its queue)
MIXED = "atoma/hostile-mixed"  # honest and garbage
GARBAGE = "atoma/hostile-garbage"  # garbage only
OVERSIZE = "atoma/hostile-oversize"  # oversize only: a 6 MB answer, or a 6 MB event that never ends
OTHER = "atoma/hostile-other"  # honest only
REPLY = ("--reply-tokens", "8")
NODES = [
    SimNode("honest", chat=(CHAT, MIXED, OTHER), options=REPLY, prices=(100_000, 100_000)),
    SimNode("liar", chat=(CHAT,), options=(*REPLY, "--metrics-lie", "negative"), prices=(1_000_000, 1_000_000)),
    SimNode("garbage", chat=(GARBAGE, MIXED), options=(*REPLY, "--garbage", "not_json"), prices=(100_000, 100_000)),
    SimNode("oversize", chat=(OVERSIZE,), options=(*REPLY, "--oversize-bytes", "6000000"), prices=(100_000, 100_000)),
]
SETTINGS = {
    "core": {"node_max_event_bytes": 1_048_576, "node_max_response_bytes": 4_194_304},
    "routing": {
        "metrics_interval": 0.2,
        "max_attempts": 2,
        "eject_after_failures": 1000,
        "eject_min_requests": 1000,
        "eject_error_rate": 1.0,
    },
}
MESSAGES = [{"role": "user", "content": "Hello there"}]
FUNDS = 10**9


@pytest.fixture(scope="module")
def hostile(stack_factory: StackFactory) -> Iterator[Stack]:
    sim_words = (CHAT, MIXED, GARBAGE, OTHER)
    with stack_factory(Topology(IN_PROCESS, "sqlite"), nodes=NODES, settings=SETTINGS, sim_words=sim_words) as stack:
        yield stack


async def _chat(stack: Stack, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 8, **extra}
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(
            f"{stack.facade_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )


async def _served(stack: Stack) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=10) as http:
        return {n: (await http.get(f"{url}/sim/stats")).json()["requests_total"] for n, url in stack.nodes.items()}


async def _configure(stack: Stack, node_id: str, **fields: object) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{stack.nodes[node_id]}/sim/config", json=fields)
    assert response.status_code == 200, response.text


async def _settled(stack: Stack, email: str, records: int) -> Any:
    """The user's ledger once `records` requests were settled (settlement runs after the answer)."""
    for _ in range(200):
        ledger = await stored_ledger(stack.database_url, email)
        if ledger.record_count >= records and ledger.held == 0:
            return ledger
        await asyncio.sleep(0.05)
    raise AssertionError(f"never settled: {ledger}")


def _assert_node_failed(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "node_failed"


async def test_a_node_lying_about_its_queue_does_not_get_the_traffic(hostile: Stack) -> None:
    _, key = await funded_key(hostile.database_url, FUNDS)
    await asyncio.sleep(1.0)  # a few scrapes of the liar's /metrics (-1,000,000 requests waiting)
    before = await _served(hostile)
    for _ in range(40):
        assert (await _chat(hostile, key, CHAT)).status_code == 200
    after = await _served(hostile)
    honest, liar = after["honest"] - before["honest"], after["liar"] - before["liar"]
    assert honest + liar == 40 and honest > 3 * liar, (honest, liar)


@pytest.mark.parametrize("garbage", ["not_json", "html", "non_utf8", "usage_type"])
async def test_node_garbage_is_a_node_failure_charged_nothing(hostile: Stack, garbage: str) -> None:
    await _configure(hostile, "garbage", garbage=garbage, garbage_after_tokens=0)
    email, key = await funded_key(hostile.database_url, FUNDS)
    before = (await _served(hostile))["garbage"]
    _assert_node_failed(await _chat(hostile, key, GARBAGE))
    _assert_node_failed(await _chat(hostile, key, GARBAGE, stream=True))  # before the first token: a real status
    assert (await _served(hostile))["garbage"] - before == 4  # both requests, each tried on it twice
    ledger = await _settled(hostile, email, 2)
    assert ledger.charged == 0 and ledger.debited == 0 and [r.outcome for r in ledger.records] == ["node_failed"] * 2


async def test_node_garbage_fails_over_to_an_honest_node(hostile: Stack) -> None:
    await _configure(hostile, "garbage", garbage="html", garbage_after_tokens=0)
    _, key = await funded_key(hostile.database_url, FUNDS)
    before = await _served(hostile)
    for stream in (False, True) * 5:
        response = await _chat(hostile, key, MIXED, stream=stream)
        assert response.status_code == 200 and response.headers["x-atoma-node"] == "honest"
    after = await _served(hostile)
    assert after["garbage"] > before["garbage"]  # it was tried, failed, and the request went on


async def test_garbage_mid_stream_ends_the_stream_charged_by_what_was_delivered(hostile: Stack) -> None:
    await _configure(hostile, "garbage", garbage="non_utf8", garbage_after_tokens=3)
    email, key = await funded_key(hostile.database_url, FUNDS)
    response = await _chat(hostile, key, GARBAGE, stream=True)
    assert response.status_code == 200  # the stream had started
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e.startswith("data: ")]
    assert '"node_failed"' in events[-1] and "[DONE]" not in events
    ledger = await _settled(hostile, email, 1)
    [record] = ledger.records
    assert record.outcome == "node_failed" and record.completion_tokens == 3  # the three tokens relayed
    assert 0 < ledger.charged == record.cost


async def test_an_answer_over_the_response_limit_is_a_node_failure_not_429(hostile: Stack) -> None:
    email, key = await funded_key(hostile.database_url, FUNDS)
    _assert_node_failed(await _chat(hostile, key, OVERSIZE))
    ledger = await _settled(hostile, email, 1)
    assert ledger.charged == 0


async def test_other_users_are_served_while_a_node_streams_an_endless_event(hostile: Stack) -> None:
    _, hostile_key = await funded_key(hostile.database_url, FUNDS)
    _, other_key = await funded_key(hostile.database_url, FUNDS)
    before = (await _served(hostile))["oversize"]
    endless = asyncio.create_task(_chat(hostile, hostile_key, OVERSIZE, stream=True))
    for _ in range(200):
        if (await _served(hostile))["oversize"] > before or endless.done():
            break
        await asyncio.sleep(0.01)
    others = await asyncio.gather(*(_chat(hostile, other_key, OTHER, stream=s) for s in (False, True, False)))
    assert [r.status_code for r in others] == [200, 200, 200]
    _assert_node_failed(await endless)  # cut at the event limit, never relayed, never a 429
