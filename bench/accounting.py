"""What accounting adds per request: the same core with `ledger.enabled` on and off, side by side.

    .venv/bin/python -m bench.accounting [--database postgresql|sqlite] [--runs 5] [--requests 300]
                                         [--concurrency 32] [--duration 5] [--users 1]

One zero-latency node simulator (`--ttft-ms 0 --tokens-per-second 0 --reply-tokens 16`), two
`atoma-proxy core` processes on one database, one with the ledger on and one with it off, and this
process as the gRPC client (generated stubs, non-streaming and streaming chat with max_tokens 16).
Each run measures, for each core in turn (ABBA order across runs, so drift and background load land
on both alike):

- latency: `--requests` requests one at a time, p50 and p99 (what one request pays);
- throughput: `--concurrency` closed-loop callers for `--duration` seconds (what one core sustains).

The table shows medians over the runs and the difference on - off. With the ledger on, every request
runs one reservation transaction before the node is called and one settlement transaction after it
(on PostgreSQL one statement each, in autocommit); the user's prices and stacks come from a 5 s cache.
The row counts printed at the end (usage records = requests metered) show the metered path really ran.

`--users N` spreads the callers over N users (keys). All requests of one user update that user's
balance row, each holding its lock through a durable commit, so one user's throughput is bounded by
about 1 / (2 x commit latency); several users proceed in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from atoma_proxy.core.ledger.admin import credit_user
from atoma_proxy.core.persistence import create_api_key, upgrade_database
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from bench import stacks

POSTGRES_ADMIN_URL = os.environ.get("ATOMA_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE_NAME = "atoma_bench_accounting"
MODEL = "atoma/sim-chat"
EMAIL = "bench@accounting.bench"


@contextlib.contextmanager
def _database(kind: str, *, async_commit: bool = False) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="atoma-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE_NAME)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
        if async_commit:  # diagnostic only: how much of the cost is waiting for the WAL flush
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(DATABASE_NAME))
            )
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=DATABASE_NAME).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE_NAME)))


@dataclass
class Samples:
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    stream_p50_ms: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    stream_rps: list[float] = field(default_factory=list)
    errors: int = 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _request(stream: bool) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        model=MODEL,
        messages=[chat_pb2.ChatMessage(role="user", text="How much does this request cost?")],
        max_tokens=16,
        stream=stream,
    )


Metadata = tuple[tuple[str, str], ...]


async def _one(stub: pb_grpc.RoutingServiceStub, request: pb.ChatCompletionRequest, metadata: Metadata) -> None:
    async for _ in stub.ChatCompletion(request, metadata=metadata, timeout=30):
        pass


async def _latencies(
    stub: pb_grpc.RoutingServiceStub, metadatas: list[Metadata], count: int, stream: bool
) -> list[float]:
    request, samples = _request(stream), []
    for index in range(count):
        start = time.perf_counter()
        await _one(stub, request, metadatas[index % len(metadatas)])
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def _throughput(
    stub: pb_grpc.RoutingServiceStub, metadatas: list[Metadata], concurrency: int, duration: float, stream: bool
) -> tuple[float, int]:
    request = _request(stream)
    done = errors = 0
    deadline = time.perf_counter() + duration

    async def caller(metadata: Metadata) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                await _one(stub, request, metadata)
            except grpc.aio.AioRpcError:
                errors += 1
            else:
                done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller(metadatas[i % len(metadatas)]) for i in range(concurrency)))
    return done / (time.perf_counter() - start), errors


async def _measure(target: str, metadatas: list[Metadata], args: argparse.Namespace, samples: Samples) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        await _latencies(stub, metadatas, 20, False)  # warm-up: connections, caches
        latencies = await _latencies(stub, metadatas, args.requests, False)
        streamed = await _latencies(stub, metadatas, args.requests, True)
        rps, errors = await _throughput(stub, metadatas, args.concurrency, args.duration, False)
        stream_rps, stream_errors = await _throughput(stub, metadatas, args.concurrency, args.duration, True)
    samples.p50_ms.append(statistics.median(latencies))
    samples.p99_ms.append(_percentile(latencies, 0.99))
    samples.stream_p50_ms.append(statistics.median(streamed))
    samples.rps.append(rps)
    samples.stream_rps.append(stream_rps)
    samples.errors += errors + stream_errors


def _row_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    from atoma_proxy.core.persistence import normalize_url

    url = normalize_url(database_url).replace("+aiosqlite", "").replace("+psycopg", "+psycopg")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("reservations", "usage_records", "daily_usage")
            }
    finally:
        engine.dispose()


async def main(args: argparse.Namespace) -> None:
    command = "  ".join(["$", ".venv/bin/python -m bench.accounting", *map(shlex.quote, sys.argv[1:])])
    print(command, flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="atoma-bench-logs-") as logs,
        _database(args.database, async_commit=args.async_commit) as database_url,
    ):
        logs_dir = Path(logs)
        await upgrade_database(database_url)
        metadatas: list[Metadata] = []
        for index in range(args.users):
            email = f"{index}-{EMAIL}"
            key = await create_api_key(database_url, email=email, migrate=False)
            await credit_user(database_url, email=email, amount=10**15, idempotency_key=f"bench:{email}")
            metadatas.append((("authorization", f"Bearer {key}"),))
        node = stacks.start_node(logs_dir)
        config = logs_dir / "config.toml"
        config.write_text(
            "[core]\nhealth_interval = 5.0\n\n"
            f"[[tokenizers]]\nmodel = '{MODEL}'\nkind = 'sim-words'\n\n"
            f"[[nodes]]\nid = 'sim'\nurl = '{node.url}'\nmodels = ['{MODEL}']\n"
            "input_price_per_million = 150000\noutput_price_per_million = 600000\n"
        )
        targets = {"on": f"127.0.0.1:{stacks.free_port()}", "off": f"127.0.0.1:{stacks.free_port()}"}
        with contextlib.ExitStack() as stack:
            stack.callback(node.stop)
            for name, target in targets.items():
                env = {
                    "ATOMA_CONFIG": str(config),
                    "ATOMA_DATABASE__URL": database_url,
                    "ATOMA_CORE__LISTEN": target,
                    "ATOMA_LEDGER__ENABLED": "true" if name == "on" else "false",
                }
                log = logs_dir / f"core-{name}.log"
                stack.callback(stacks.start_core(env, log).stop)
            results = {name: Samples() for name in targets}
            for run in range(args.runs):
                order = ["on", "off"] if run % 2 == 0 else ["off", "on"]
                for name in order:
                    await _measure(targets[name], metadatas, args, results[name])
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
        counts = _row_counts(database_url)
    _print_table(args, results, counts)


def _print_table(args: argparse.Namespace, results: dict[str, Samples], counts: dict[str, int]) -> None:
    rows = [
        ("non-stream latency p50 (ms)", "p50_ms", 2),
        ("non-stream latency p99 (ms)", "p99_ms", 2),
        ("stream latency p50 (ms)", "stream_p50_ms", 2),
        (f"non-stream req/s at c={args.concurrency}", "rps", 0),
        (f"stream req/s at c={args.concurrency}", "stream_rps", 0),
    ]
    print(
        f"\nmedians of {args.runs} runs; database {args.database}"
        f"{' (synchronous_commit off)' if args.async_commit else ''}; {args.users} user(s); {args.requests} sequential "
        f"requests, "
        f"{args.duration:g} s at c={args.concurrency} per run and core\n"
    )
    print("| metric | ledger off | ledger on | on - off |")
    print("|---|---:|---:|---:|")
    for label, attribute, digits in rows:
        off = statistics.median(getattr(results["off"], attribute))
        on = statistics.median(getattr(results["on"], attribute))
        change = f"{on - off:+.{digits}f}" + (f" ({(on - off) / off:+.0%})" if off else "")
        print(f"| {label} | {off:.{digits}f} | {on:.{digits}f} | {change} |")
    print(f"\nerrors: ledger off {results['off'].errors}, ledger on {results['on'].errors}")
    print(f"rows written by the metered core: {counts}")


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--runs", type=int, default=5, help="runs per core (median reported)")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per run, per mode")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop callers for the throughput part")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each throughput part")
    parser.add_argument("--users", type=int, default=1, help="users (API keys) the callers are spread over")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="diagnostic: synchronous_commit = off on the bench database, to see what durable commits cost",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(_parse()))
