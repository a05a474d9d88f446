"""A finished stream hands its keep-alive connection back to the pool instead of dropping it."""

from __future__ import annotations

import orjson

from atoma_proxy.config import CoreSettings
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.transport import HttpNodeTransport
from atoma_proxy.nodesim import SimConfig, start_node_sim

BODY = orjson.dumps({"model": "atoma/sim-chat", "messages": [{"role": "user", "content": "hi"}], "stream": True})


async def test_consecutive_streams_share_one_connection() -> None:
    async with await start_node_sim(SimConfig(reply_tokens=3)) as sim:
        node = Node(
            id="n",
            url=sim.url,
            models=frozenset({"atoma/sim-chat"}),
            input_price_per_million=0,
            output_price_per_million=0,
        )
        transport = HttpNodeTransport(CoreSettings())
        try:
            seen = []
            for _ in range(3):
                stream = transport.stream(node, "/v1/chat/completions", BODY, request_id="r")
                async for batch in stream:  # stop at [DONE], as the relay does
                    if b"[DONE]" in batch:
                        break
                await stream.aclose()
                seen.append(transport.open_connections())
        finally:
            await transport.aclose()
    assert seen == [1, 1, 1]
