"""Client disconnects cancel the core call; headers become metadata the grpc-gateway way."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.facade.conftest import RunningFacade
from tests.facade.fake_core import FakeCore, chat_chunk

MESSAGES = [{"role": "user", "content": "hi"}]
# Only a guard against a hang: the assertions are about what happened, not how fast.
GUARD = 10.0


class KeepingStub:
    """Wraps the facade's stub and keeps every call alive, so only an explicit cancel can end it
    (a dropped grpc.aio call is also cancelled by its finalizer, which would hide a missing cancel)."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self.calls: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(method(*args, **kwargs))
            return self.calls[-1]

        return call


@pytest.fixture
def kept_calls(facade: RunningFacade) -> Iterator[KeepingStub]:
    stubs = facade.app.state.core
    keeping = KeepingStub(stubs.routing)
    facade.app.state.core = dataclasses.replace(stubs, routing_stubs=[keeping])
    yield keeping
    facade.app.state.core = stubs


async def test_disconnect_mid_stream_cancels_the_core_call(
    client: openai.AsyncOpenAI, core: FakeCore, kept_calls: KeepingStub
) -> None:
    core.script.chunks = [chat_chunk("first")]
    core.script.hang_after_chunks = True
    stream = await client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    first = await anext(aiter(stream))
    assert first.choices[0].delta.content == "first"
    assert not core.cancelled.is_set()

    await stream.close()

    await asyncio.wait_for(core.cancelled.wait(), GUARD)


async def test_disconnect_while_waiting_for_a_completion_cancels_the_core_call(
    facade: RunningFacade, core: FakeCore, kept_calls: KeepingStub
) -> None:
    core.script.hang_after_chunks = True

    async def request() -> None:
        async with httpx.AsyncClient(base_url=facade.base_url) as http:
            await http.post("/v1/chat/completions", json={"model": "m1", "messages": MESSAGES})

    task = asyncio.create_task(request())
    await asyncio.wait_for(core.received.wait(), GUARD)
    task.cancel()  # closes the client's connection
    with pytest.raises(asyncio.CancelledError):
        await task

    await asyncio.wait_for(core.cancelled.wait(), GUARD)


async def test_headers_become_metadata(facade: RunningFacade, core: FakeCore) -> None:
    headers = {
        "authorization": "Bearer sk-abc",
        "x-request-id": "client-req-9",
        "grpc-metadata-x-tenant": "t1",
        "grpc-metadata-trace-bin": "AAEC",
        "x-unrelated": "not forwarded",
    }
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/embeddings", json={"model": "m1", "input": "a"}, headers=headers)

    assert response.status_code == 200
    metadata = core.metadata[0]
    assert metadata["authorization"] == "Bearer sk-abc"
    assert metadata["x-request-id"] == "client-req-9"
    assert metadata["x-tenant"] == "t1"
    assert metadata["trace-bin"] == b"\x00\x01\x02"
    assert "x-unrelated" not in metadata


async def test_grpc_timeout_sets_the_deadline(facade: RunningFacade, core: FakeCore) -> None:
    core.script.hang_after_chunks = True
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "m1", "messages": MESSAGES}, headers={"grpc-timeout": "50m"}
        )

    assert response.status_code == 504
    assert response.json()["error"] == {
        "message": "The request timed out.",
        "type": "server_error",
        "param": None,
        "code": "deadline_exceeded",
    }


@pytest.mark.parametrize(("header", "at_most"), [(None, 30.0), ("20S", 20.0), ("2H", 30.0)])
async def test_deadline_is_the_header_capped_by_the_setting(
    facade: RunningFacade, core: FakeCore, header: str | None, at_most: float
) -> None:
    headers = {"grpc-timeout": header} if header else {}
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post("/v1/embeddings", json={"model": "m1", "input": "a"}, headers=headers)

    assert response.status_code == 200
    [remaining] = core.time_remaining
    # gRPC rounds deadlines up on the wire; the margins only separate 20 s, 30 s (the fixture setting) and 2 h.
    assert remaining is not None and at_most - 5 < remaining < at_most + 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("grpc-timeout", "soon"),
        ("grpc-metadata-grpc-status", "0"),
        ("grpc-metadata-x-a", "caf\xe9"),
        ("grpc-metadata-x-bin", "!!"),
        ("authorization", "Bearer caf\xe9"),
    ],
)
async def test_bad_gateway_headers_are_400(facade: RunningFacade, core: FakeCore, name: str, value: str) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.post(
            "/v1/embeddings", json={"model": "m1", "input": "a"}, headers={name: value.encode("latin-1")}
        )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == name
    assert core.requests == []


async def test_health_reports_serving(facade: RunningFacade) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        response = await http.get("/health")

    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_health_is_503_when_the_core_is_not_serving(facade: RunningFacade, running_core) -> None:
    from grpc_health.v1 import health_pb2

    await running_core.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        async with httpx.AsyncClient(base_url=facade.base_url) as http:
            response = await http.get("/health")
    finally:
        await running_core.health.set("", health_pb2.HealthCheckResponse.SERVING)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_serving"
