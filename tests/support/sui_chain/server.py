"""A Sui GraphQL RPC on loopback for tests: Sui's schema (the part in schema.graphql) served with
graphql-core, resolvers over recorded data (fixtures/*.json) that tests can extend.

It answers what pysui's GraphQL client asks when it connects (introspection, the `x-sui-rpc-version`
header, chainIdentifier/checkpoint/serviceConfig/protocolConfigs) and what the proxy asks: event
pages with opaque cursors filtered by module or type, transactions with balance changes and events,
object reads, and `executeTransaction`, whose outcome a test scripts with `on_execute`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from graphql import build_schema, graphql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

HERE = Path(__file__).parent
SCHEMA = build_schema((HERE / "schema.graphql").read_text())
SCHEMA.type_map["Owner"].resolve_type = lambda value, info, type_: value["__typename"]  # type: ignore[attr-defined]
RPC_VERSION = "1.62.0-recorded"
MAX_PAGE = 50


def load_fixture(name: str) -> Any:
    return json.loads((HERE / "fixtures" / name).read_text())


_ADDRESS = re.compile(r"0x([0-9a-fA-F]{1,64})")


def canonical_type(type_: str) -> str:
    """A Move type with every address in full (0x2 -> 0x000...002), as Sui compares type filters."""
    return _ADDRESS.sub(lambda m: "0x" + m[1].lower().rjust(64, "0"), type_)


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"i": index}).encode()).decode().rstrip("=")


def _index(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    return int(json.loads(base64.urlsafe_b64decode(padded))["i"])


def _connection(items: list[Any], start: int, first: int | None) -> dict[str, Any]:
    count = min(first or MAX_PAGE, MAX_PAGE)
    page = items[start : start + count]
    cursors = [_cursor(start + i) for i in range(len(page))]
    return {
        "nodes": page,
        "edges": [{"node": n, "cursor": c} for n, c in zip(page, cursors, strict=True)],
        "pageInfo": {
            "hasNextPage": start + len(page) < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }


@dataclass
class LocalChain:
    """The recorded chain: events in chain order, transactions by digest, objects by address."""

    events: list[dict[str, Any]] = field(default_factory=list)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_execute: Callable[[str, list[str]], dict[str, Any]] | None = None
    executed: list[tuple[str, list[str]]] = field(default_factory=list)
    requests: int = 0

    @classmethod
    def recorded(cls) -> LocalChain:
        chain = cls()
        for tx in load_fixture("transactions.json"):
            chain.add_transaction(tx)
        for obj in load_fixture("objects.json"):
            chain.objects[obj["address"]] = obj
        return chain

    def add_transaction(self, tx: dict[str, Any]) -> None:
        """A transaction in the shape Sui GraphQL answers; its events join the event stream."""
        self.transactions[tx["digest"]] = tx
        for event in (tx.get("effects") or {}).get("events", {}).get("nodes", []):
            self.events.append({**event, "transaction": {"digest": tx["digest"]}})

    def _events(self, info: Any, first: int | None = None, after: str | None = None, filter: Any = None, **_: Any):
        wanted = filter or {}
        module, type_ = wanted.get("module"), wanted.get("type")

        def keep(event: dict[str, Any]) -> bool:
            repr_ = event["contents"]["type"]["repr"]
            if module and not (repr_.startswith(module + "::") or repr_.split("::")[0] == module):
                return False
            return not type_ or repr_ == type_ or repr_.startswith(type_ + "::") or repr_.startswith(type_ + "<")

        # Cursors index the whole stream, as a real cursor names a place in the chain.
        indexed = [(i, e) for i, e in enumerate(self.events) if keep(e)]
        start_at = _index(after) + 1 if after else 0
        rest = [(i, e) for i, e in indexed if i >= start_at]
        count = min(first or MAX_PAGE, MAX_PAGE)
        page = rest[:count]
        return {
            "nodes": [e for _, e in page],
            "edges": [{"node": e, "cursor": _cursor(i)} for i, e in page],
            "pageInfo": {
                "hasNextPage": len(rest) > count,
                "hasPreviousPage": start_at > 0,
                "startCursor": _cursor(page[0][0]) if page else None,
                "endCursor": _cursor(page[-1][0]) if page else after,
            },
        }

    def _transaction(self, info: Any, digest: str) -> dict[str, Any] | None:
        tx = self.transactions.get(digest)
        if tx is None:
            return None
        effects = dict(tx.get("effects") or {})
        changes = effects.get("balanceChanges", {}).get("nodes", [])
        effects["balanceChanges"] = lambda info, first=None, after=None, **_: _connection(
            changes, _index(after) + 1 if after else 0, first
        )
        events = [
            {**e, "transaction": {"digest": digest}}
            for e in (tx.get("effects") or {}).get("events", {}).get("nodes", [])
        ]
        effects["events"] = lambda info, first=None, after=None, **_: _connection(
            events, _index(after) + 1 if after else 0, first
        )
        effects.setdefault("digest", digest)
        return {**tx, "effects": effects}

    def _owned(self, owner: str) -> Callable[..., dict[str, Any]]:
        def objects(info: Any, first: int | None = None, after: str | None = None, filter: Any = None, **_: Any):
            wanted = (filter or {}).get("type")
            owned = [
                o
                for o in self.objects.values()
                if (o.get("owner") or {}).get("address", {}).get("address") == owner
                and (wanted is None or canonical_type(o["contents"]["type"]["repr"]) == canonical_type(wanted))
            ]
            return _connection(owned, _index(after) + 1 if after else 0, first)

        return objects

    def _execute(self, info: Any, transactionDataBcs: str, signatures: list[str]) -> dict[str, Any]:
        self.executed.append((transactionDataBcs, list(signatures)))
        if self.on_execute is None:
            return {"errors": ["execution is not scripted on this chain"], "effects": None}
        tx = self.on_execute(transactionDataBcs, list(signatures))
        self.add_transaction(tx)
        return {"errors": None, "effects": self._transaction(info, tx["digest"])["effects"]}

    def root(self) -> dict[str, Any]:
        recorded = load_fixture("service.json")
        return {
            **recorded,
            "checkpoint": lambda info, sequenceNumber=None: recorded["checkpoint"],
            "protocolConfigs": lambda info, version=None: recorded["protocolConfigs"],
            "events": self._events,
            "transaction": self._transaction,
            "object": lambda info, address, version=None: self.objects.get(address),
            "address": lambda info, address: {"address": address, "objects": self._owned(address)},
            "executeTransaction": self._execute,
        }


class _App:
    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    async def graphql(self, request: Request) -> JSONResponse:
        self.chain.requests += 1
        body = await request.json()
        result = await graphql(
            SCHEMA,
            body["query"],
            root_value=self.chain.root(),
            variable_values=body.get("variables"),
            operation_name=body.get("operationName"),
        )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        return JSONResponse(payload, headers={"x-sui-rpc-version": RPC_VERSION})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test process owns the signals


@dataclass
class RunningChain:
    chain: LocalChain
    url: str
    _server: uvicorn.Server
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def start_chain(chain: LocalChain | None = None) -> RunningChain:
    """Serve `chain` (the recorded one by default) on a free loopback port, in this event loop."""
    chain = chain or LocalChain.recorded()
    app = _App(chain)
    starlette = Starlette(
        routes=[Route("/graphql", app.graphql, methods=["POST"]), Route("/", app.graphql, methods=["POST"])]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(starlette, log_config=None, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    return RunningChain(chain, f"http://127.0.0.1:{port}/graphql", server, task)
