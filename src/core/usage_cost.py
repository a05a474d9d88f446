"""The charge of a request written into its answer's `usage`, as OpenRouter does.

`usage.cost` is the charge in USD (a JSON number, micro-USD / 10^6: exact to the micro-dollar in
its decimal form) and `usage.cost_micro_usd` the same as an exact integer. The chat/completion
answer of a non-streamed request and the usage chunk of a stream (the one with `usage` and no
choices, sent only when the client asked for `stream_options.include_usage`) carry them; 0 when
a prepaid stack paid or metering is off. The rest of the object is re-encoded unchanged.

An answer an Atoma node signed (`response_hash` and `signature` over its JSON) is relayed as signed,
without the cost: changing it would break the signature a client may verify. Its cost is in
`StreamEnd.cost_micro_usd` and `x-atoma-cost` like every other request's.
"""

from __future__ import annotations

from typing import Any

import orjson

from atoma_proxy.sui.node_protocol import RESPONSE_HASH_KEY

__all__ = ["usage_with_cost", "with_cost"]


def usage_with_cost(usage: dict[str, Any], cost_micro_usd: int) -> dict[str, Any]:
    return {**usage, "cost": cost_micro_usd / 1_000_000, "cost_micro_usd": cost_micro_usd}


def with_cost(data: bytes, cost_micro_usd: int) -> bytes:
    """`data` (a JSON object) with the cost in its `usage`; unchanged when it has no usage object."""
    parsed = orjson.loads(data)
    if type(parsed) is not dict or type(parsed.get("usage")) is not dict or RESPONSE_HASH_KEY in parsed:
        return data
    parsed["usage"] = usage_with_cost(parsed["usage"], cost_micro_usd)
    return orjson.dumps(parsed)
