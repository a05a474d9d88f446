"""Hostile nodes, black-box: node simulators that lie in /metrics, answer garbage or never end an event.

Its own stack (SQLite, the ledger on, small node limits: 1 MiB per event, 4 MiB per answer;
ejection effectively off so that every request reaches the hostile node). Assertions are on
statuses, error codes, who served what and what was charged, never on durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e._ledger import funded_key, stored_ledger
from tests.support.processes import free_port, running

CHAT = "atoma/hostile-chat"  # honest (cheap) and liar (ten times the price, lying about its queue)
MIXED = "atoma/hostile-mixed"  # honest and garbage
GARBAGE = "atoma/hostile-garbage"  # garbage only
OVERSIZE = "atoma/hostile-oversize"  # oversize only: a 6 MB answer, or a 6 MB event that never ends
OTHER = "atoma/hostile-other"  # honest only
NODES: dict[str, tuple[list[str], int, list[str]]] = {
    "honest": ([CHAT, MIXED, OTHER], 100_000, []),
    "liar": ([CHAT], 1_000_000, ["--metrics-lie", "negative"]),
    "garbage": ([GARBAGE, MIXED], 100_000, ["--garbage", "not_json"]),
    "oversize": ([OVERSIZE], 100_000, ["--oversize-bytes", "6000000"]),
}
MESSAGES = [{"role": "user", "content": "Hello there"}]
FUNDS = 10**9


@dataclass(frozen=True)
class HostileStack:
    facade_url: str
    database_url: str
    nodes: dict[str, str]


def _config(nodes: dict[str, str]) -> str:
    text = """\
[core]
health_interval = 0.5
node_max_event_bytes = 1048576
node_max_response_bytes = 4194304

[routing]
metrics_interval = 0.2
max_attempts = 2
eject_after_failures = 1000
eject_min_requests = 1000
eject_error_rate = 1.0
"""
    text += "".join(f"\n[[tokenizers]]\nmodel = '{m}'\nkind = 'sim-words'\n" for m in (CHAT, MIXED, GARBAGE, OTHER))
    for node_id, (models, price, _) in NODES.items():
        text += (
            f"\n[[nodes]]\nid = '{node_id}'\nurl = '{nodes[node_id]}'\nmodels = {models!r}\n"
            f"input_price_per_million = {price}\noutput_price_per_million = {price}\n"
        )
    return text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileStack]:
    tmp = tmp_path_factory.mktemp("hostile")
    with ExitStack() as stack:
        nodes: dict[str, str] = {}
        for node_id, (models, _, extra) in NODES.items():
            port = free_port()
            nodes[node_id] = f"http://127.0.0.1:{port}"
            args = ["node-sim", "--port", str(port), "--node-id", node_id, "--reply-tokens", "8", *extra]
            for model in models:
                args += ["--chat-model", model]
            stack.enter_context(running(args, ready_url=f"{nodes[node_id]}/health", log=tmp / f"{node_id}.log"))
        config = tmp / "config.toml"
        config.write_text(_config(nodes))
        database_url = f"sqlite:///{tmp / 'hostile.db'}"
        facade_port, core_port = free_port(), free_port()
        env = {
            "ATOMA_CONFIG": str(config),
            "ATOMA_DATABASE__URL": database_url,
            "ATOMA_FACADE__PORT": str(facade_port),
            "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
            "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
        }
        facade = f"http://127.0.0.1:{facade_port}"
        stack.enter_context(running(["serve"], ready_url=f"{facade}/health", log=tmp / "proxy.log", env=env))
        yield HostileStack(facade, database_url, nodes)


async def _chat(stack: HostileStack, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 8, **extra}
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(
            f"{stack.facade_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )


async def _served(stack: HostileStack) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=10) as http:
        return {n: (await http.get(f"{url}/sim/stats")).json()["requests_total"] for n, url in stack.nodes.items()}


async def _configure(stack: HostileStack, node_id: str, **fields: object) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{stack.nodes[node_id]}/sim/config", json=fields)
    assert response.status_code == 200, response.text


async def _settled(stack: HostileStack, email: str, records: int) -> Any:
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


async def test_a_node_lying_about_its_queue_does_not_get_the_traffic(hostile: HostileStack) -> None:
    _, key = await funded_key(hostile.database_url, FUNDS)
    await asyncio.sleep(1.0)  # a few scrapes of the liar's /metrics (-1,000,000 requests waiting)
    before = await _served(hostile)
    for _ in range(40):
        assert (await _chat(hostile, key, CHAT)).status_code == 200
    after = await _served(hostile)
    honest, liar = after["honest"] - before["honest"], after["liar"] - before["liar"]
    assert honest + liar == 40 and honest > 3 * liar, (honest, liar)


@pytest.mark.parametrize("garbage", ["not_json", "html", "non_utf8", "usage_type"])
async def test_node_garbage_is_a_node_failure_charged_nothing(hostile: HostileStack, garbage: str) -> None:
    await _configure(hostile, "garbage", garbage=garbage, garbage_after_tokens=0)
    email, key = await funded_key(hostile.database_url, FUNDS)
    before = (await _served(hostile))["garbage"]
    _assert_node_failed(await _chat(hostile, key, GARBAGE))
    _assert_node_failed(await _chat(hostile, key, GARBAGE, stream=True))  # before the first token: a real status
    assert (await _served(hostile))["garbage"] - before == 4  # both requests, each tried on it twice
    ledger = await _settled(hostile, email, 2)
    assert ledger.charged == 0 and ledger.debited == 0 and [r.outcome for r in ledger.records] == ["node_failed"] * 2


async def test_node_garbage_fails_over_to_an_honest_node(hostile: HostileStack) -> None:
    await _configure(hostile, "garbage", garbage="html", garbage_after_tokens=0)
    _, key = await funded_key(hostile.database_url, FUNDS)
    before = await _served(hostile)
    for stream in (False, True) * 5:
        response = await _chat(hostile, key, MIXED, stream=stream)
        assert response.status_code == 200 and response.headers["x-atoma-node"] == "honest"
    after = await _served(hostile)
    assert after["garbage"] > before["garbage"]  # it was tried, failed, and the request went on


async def test_garbage_mid_stream_ends_the_stream_charged_by_what_was_delivered(hostile: HostileStack) -> None:
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


async def test_an_answer_over_the_response_limit_is_a_node_failure_not_429(hostile: HostileStack) -> None:
    email, key = await funded_key(hostile.database_url, FUNDS)
    _assert_node_failed(await _chat(hostile, key, OVERSIZE))
    ledger = await _settled(hostile, email, 1)
    assert ledger.charged == 0


async def test_other_users_are_served_while_a_node_streams_an_endless_event(hostile: HostileStack) -> None:
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
