"""`core.max_connection_age`: the core asks clients to reconnect (so `dns:///` targets find new replicas),
without failing the calls in flight."""

from __future__ import annotations

import asyncio

import grpc

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.telemetry.inprocess import MODEL, in_process_stack


async def test_connections_are_renewed_and_calls_in_flight_finish() -> None:
    async with in_process_stack(max_connection_age=0.2) as stack:
        stack.node.config.tokens_per_second = 10  # a stream of a few hundred ms: it outlives the connection's age
        states: list[grpc.ChannelConnectivity] = []
        async with grpc.aio.insecure_channel(stack.core_target) as channel:
            stub = pb_grpc.RoutingServiceStub(channel)
            request = pb.ChatCompletionRequest(
                model=MODEL, messages=[chat_pb2.ChatMessage(role="user", text="hi")], stream=True
            )
            metadata = (("authorization", f"Bearer {stack.api_key}"),)

            async def watch() -> None:
                state = channel.get_state()
                while True:
                    await channel.wait_for_state_change(state)
                    state = channel.get_state()
                    states.append(state)

            watcher = asyncio.create_task(watch())
            try:
                for _ in range(3):
                    events = [
                        event.WhichOneof("event") async for event in stub.ChatCompletion(request, metadata=metadata)
                    ]
                    assert events[-1] == "end" and events.count("chunk") + events.count("chunks") >= 1
            finally:
                watcher.cancel()
    # The connection was given up at least once (GOAWAY -> IDLE) while every call succeeded.
    assert grpc.ChannelConnectivity.IDLE in states, states
