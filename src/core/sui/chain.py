"""Reading and writing the Sui chain: a small interface, and its implementation over pysui's GraphQL client.

`ChainClient` is the seam: event pages of the Atoma package, transactions by digest (balance changes,
status) and transaction execution. `GraphQLChainClient` speaks Sui's GraphQL RPC through pysui's
`GqlProtocolClient`, which reads the server's schema by introspection when it connects (synchronously:
the connection is made in a worker thread, once).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "BalanceChange",
    "ChainClient",
    "ChainError",
    "ChainEvent",
    "ChainTransaction",
    "Coin",
    "EventPage",
    "GraphQLChainClient",
    "ObjectRef",
]


class ChainError(RuntimeError):
    """The chain RPC failed or answered something unusable."""


@dataclass(frozen=True)
class ChainEvent:
    """One Move event: `type` is its full Move type (`0xpkg::db::StackCreatedEvent`), `json` its fields."""

    type: str
    tx_digest: str
    seq: int  # position among the events of its transaction
    timestamp: str  # the checkpoint's ISO-8601 time
    sender: str
    json: dict[str, Any]

    @property
    def name(self) -> str:
        """The struct name without package, module or type parameters: `StackCreatedEvent`."""
        return self.type.split("<", 1)[0].rsplit("::", 1)[-1]

    @property
    def position(self) -> str:
        """A sortable key of the event's place in chain order (time, transaction, index)."""
        millis = int(datetime.fromisoformat(self.timestamp.replace("Z", "+00:00")).timestamp() * 1000)
        return f"{millis:015d}:{self.tx_digest}:{self.seq:06d}"


@dataclass(frozen=True)
class EventPage:
    events: list[ChainEvent]
    end_cursor: str | None
    has_next_page: bool


@dataclass(frozen=True)
class BalanceChange:
    owner: str
    coin_type: str
    amount: int  # signed, in the coin's smallest unit


@dataclass(frozen=True)
class ChainTransaction:
    digest: str
    sender: str
    success: bool
    balance_changes: list[BalanceChange] = field(default_factory=list)
    events: list[ChainEvent] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class ObjectRef:
    """An object's current reference; `initial_shared_version` is set for shared objects."""

    object_id: str
    version: int
    digest: str
    initial_shared_version: int | None = None


@dataclass(frozen=True)
class Coin:
    ref: ObjectRef
    balance: int


class ChainClient(Protocol):
    async def event_page(self, module: str, after: str | None, limit: int) -> EventPage:
        """Events emitted by `module` (`0xpkg::db`), oldest first, after the cursor `after`."""
        ...

    async def transaction(self, digest: str) -> ChainTransaction | None:
        """An executed transaction, or None when the chain does not know the digest."""
        ...

    async def execute(self, transaction_bcs: str, signatures: list[str]) -> ChainTransaction:
        """Submit a signed transaction (base64 BCS TransactionData and Sui signatures)."""
        ...

    async def object_ref(self, object_id: str) -> ObjectRef | None: ...

    async def coins(self, owner: str, coin_type: str) -> list[Coin]:
        """Coins of `coin_type` (`0x2::sui::SUI`, `<usdc>::usdc::USDC`) owned by `owner`, largest first."""
        ...

    async def reference_gas_price(self) -> int: ...

    async def aclose(self) -> None: ...


_EVENT_FIELDS = """
    sequenceNumber timestamp
    sender { address }
    transaction { digest }
    contents { type { repr } json }
"""

EVENTS_QUERY = f"""
query AtomaEvents($module: String!, $after: String, $first: Int) {{
  events(filter: {{module: $module}}, first: $first, after: $after) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{ {_EVENT_FIELDS} }}
  }}
}}
"""

_EFFECTS_FIELDS = f"""
    status
    executionError {{ message }}
    balanceChanges(first: 50) {{ nodes {{ owner {{ address }} coinType {{ repr }} amount }} }}
    events(first: 50) {{ nodes {{ {_EVENT_FIELDS} }} }}
"""

TRANSACTION_QUERY = f"""
query Transaction($digest: String!) {{
  transaction(digest: $digest) {{
    digest
    sender {{ address }}
    effects {{ {_EFFECTS_FIELDS} }}
  }}
}}
"""

_OWNER_FIELDS = "owner { __typename ... on Shared { initialSharedVersion } }"

OBJECT_QUERY = f"""
query Object($id: SuiAddress!) {{
  object(address: $id) {{ address version digest {_OWNER_FIELDS} }}
}}
"""

COINS_QUERY = """
query Coins($owner: SuiAddress!, $type: String!, $after: String) {
  address(address: $owner) {
    objects(first: 50, after: $after, filter: {type: $type}) {
      pageInfo { hasNextPage endCursor }
      nodes { address version digest contents { json } }
    }
  }
}
"""

GAS_PRICE_QUERY = "query { checkpoint { epoch { referenceGasPrice } } }"

EXECUTE_MUTATION = f"""
mutation Execute($tx: Base64!, $sigs: [Base64!]!) {{
  executeTransaction(transactionDataBcs: $tx, signatures: $sigs) {{
    errors
    effects {{ digest {_EFFECTS_FIELDS} }}
  }}
}}
"""


def parse_event(node: dict[str, Any], tx_digest: str | None = None) -> ChainEvent:
    try:
        contents = node["contents"]
        return ChainEvent(
            type=contents["type"]["repr"],
            tx_digest=tx_digest or node["transaction"]["digest"],
            seq=int(node["sequenceNumber"]),
            timestamp=node.get("timestamp") or "1970-01-01T00:00:00Z",
            sender=(node.get("sender") or {}).get("address", ""),
            json=contents.get("json") or {},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ChainError(f"malformed event: {error!r}") from None


def parse_effects(digest: str, sender: str, effects: dict[str, Any]) -> ChainTransaction:
    changes = [
        BalanceChange(
            owner=(change.get("owner") or {}).get("address", ""),
            coin_type=(change.get("coinType") or {}).get("repr", ""),
            amount=int(change["amount"]),
        )
        for change in ((effects.get("balanceChanges") or {}).get("nodes") or [])
    ]
    events = [parse_event(node, digest) for node in ((effects.get("events") or {}).get("nodes") or [])]
    error = (effects.get("executionError") or {}).get("message") or ""
    return ChainTransaction(digest, sender, effects.get("status") == "SUCCESS", changes, events, error)


class _Config:
    """What pysui's GqlProtocolClient reads of a PysuiConfiguration (which otherwise wants ~/.pysui)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.active_profile = "atoma-proxy"


class GraphQLChainClient:
    """ChainClient over Sui GraphQL, through pysui."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self._url = url
        self._timeout = timeout
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> Any:
        async with self._lock:
            if self._client is None:
                from pysui.sui.sui_pgql.pgql_clients import GqlProtocolClient

                def connect() -> Any:
                    return GqlProtocolClient(pysui_config=_Config(self._url), timeout=self._timeout)  # type: ignore[arg-type]

                try:
                    self._client = await asyncio.to_thread(connect)
                except Exception as error:  # pysui raises transport and schema errors of many kinds
                    raise ChainError(f"cannot connect to Sui GraphQL at {self._url}: {error}") from error
            return self._client

    async def _run(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        from gql import GraphQLRequest

        client = await self._connected()
        result = await client.execute_document_node(with_node=GraphQLRequest(query, variable_values=variables))
        if not result.is_ok():
            raise ChainError(f"Sui GraphQL error: {result.result_string} {result.result_data}")
        data = result.result_data
        if not isinstance(data, dict):
            raise ChainError("Sui GraphQL answered no data")
        return data

    async def event_page(self, module: str, after: str | None, limit: int) -> EventPage:
        data = await self._run(EVENTS_QUERY, {"module": module, "after": after, "first": limit})
        events = data.get("events") or {}
        page = events.get("pageInfo") or {}
        return EventPage(
            [parse_event(node) for node in events.get("nodes") or []],
            page.get("endCursor"),
            bool(page.get("hasNextPage")),
        )

    async def transaction(self, digest: str) -> ChainTransaction | None:
        data = await self._run(TRANSACTION_QUERY, {"digest": digest})
        tx = data.get("transaction")
        if not tx:
            return None
        return parse_effects(tx["digest"], (tx.get("sender") or {}).get("address", ""), tx.get("effects") or {})

    async def execute(self, transaction_bcs: str, signatures: list[str]) -> ChainTransaction:
        data = await self._run(EXECUTE_MUTATION, {"tx": transaction_bcs, "sigs": signatures})
        result = data.get("executeTransaction") or {}
        effects = result.get("effects")
        if not effects:
            raise ChainError(f"transaction refused: {'; '.join(result.get('errors') or ['no effects'])}")
        return parse_effects(effects.get("digest", ""), "", effects)

    async def object_ref(self, object_id: str) -> ObjectRef | None:
        found = (await self._run(OBJECT_QUERY, {"id": object_id})).get("object")
        if not found:
            return None
        owner = found.get("owner") or {}
        shared = owner.get("initialSharedVersion") if owner.get("__typename") == "Shared" else None
        return ObjectRef(
            found["address"], int(found["version"]), found["digest"], None if shared is None else int(shared)
        )

    async def coins(self, owner: str, coin_type: str) -> list[Coin]:
        found: list[Coin] = []
        after: str | None = None
        while True:
            data = await self._run(
                COINS_QUERY, {"owner": owner, "type": f"0x2::coin::Coin<{coin_type}>", "after": after}
            )
            objects = (data.get("address") or {}).get("objects") or {}
            for node in objects.get("nodes") or []:
                balance = ((node.get("contents") or {}).get("json") or {}).get("balance")
                value = balance.get("value") if isinstance(balance, dict) else balance
                ref = ObjectRef(node["address"], int(node["version"]), node["digest"])
                found.append(Coin(ref, int(value or 0)))
            page = objects.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return sorted(found, key=lambda c: c.balance, reverse=True)
            after = page.get("endCursor")

    async def reference_gas_price(self) -> int:
        checkpoint = (await self._run(GAS_PRICE_QUERY, {})).get("checkpoint") or {}
        return int(((checkpoint.get("epoch") or {}).get("referenceGasPrice")) or 0)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
