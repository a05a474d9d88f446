"""The load: an asyncio client with a fixed concurrency and request count, streaming with usage.

Each request is a gRPC ChatCompletion stream to the core (no facade: the routing is the subject)
asking for exactly `tokens` tokens (`ignore_eos`). Per request it records the time to the first
chunk carrying a token (TTFT), the end, the usage, the node that served it and whether it failed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
import orjson

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2, common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from bench.routing.pool import MODEL, PRICES


@dataclass(frozen=True)
class LoadSpec:
    concurrency: int = 24
    requests: int = 240
    warmup: int = 24  # requests sent first and not measured (every strategy gets the same)
    tokens: int = 64
    timeout: float = 120.0


@dataclass
class RequestResult:
    ttft: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    node: str = ""
    attempts: int = 0
    error: str | None = None


@dataclass
class RunResult:
    strategy: str
    elapsed: float
    results: list[RequestResult] = field(default_factory=list)


def _request(spec: LoadSpec, index: int) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        model=MODEL,
        messages=[chat_pb2.ChatMessage(role="user", text=f"Request {index}: tell me about routing.")],
        max_tokens=spec.tokens,
        stream=True,
        stream_options=common_pb2.StreamOptions(include_usage=True),
        extra_json=orjson.dumps({"ignore_eos": True}).decode(),
    )


def _has_token(chunk: str) -> bool:
    parsed = orjson.loads(chunk)
    return any((choice.get("delta") or {}).get("content") for choice in parsed.get("choices") or ())


async def _one(stub: pb_grpc.RoutingServiceStub, spec: LoadSpec, key: str, index: int) -> RequestResult:
    result = RequestResult()
    start = time.perf_counter()
    try:
        call = stub.ChatCompletion(
            _request(spec, index), metadata=(("authorization", f"Bearer {key}"),), timeout=spec.timeout
        )
        async for event in call:
            kind = event.WhichOneof("event")
            if kind == "chunk" and result.ttft is None and _has_token(event.chunk):
                result.ttft = time.perf_counter() - start
            elif kind == "end":
                result.prompt_tokens = event.end.usage.prompt_tokens
                result.completion_tokens = event.end.usage.completion_tokens
                result.node = event.end.routing.node_id
                result.attempts = event.end.routing.attempts
    except grpc.aio.AioRpcError as error:
        result.error = error.code().name
    return result


async def run_load(target: str, key: str, spec: LoadSpec, strategy: str) -> RunResult:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)

        async def drive(count: int, sink: list[RequestResult]) -> float:
            queue = iter(range(count))

            async def worker() -> None:
                for index in queue:
                    sink.append(await _one(stub, spec, key, index))

            begun = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
            return time.perf_counter() - begun

        await drive(spec.warmup, [])
        run = RunResult(strategy, 0.0)
        run.elapsed = await drive(spec.requests, run.results)
        return run


def cost_micro_usd(result: RequestResult) -> float:
    price_in, price_out = PRICES.get(result.node, (0, 0))
    return (result.prompt_tokens * price_in + result.completion_tokens * price_out) / 1_000_000
