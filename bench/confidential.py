"""What confidentiality adds, per request and per chunk, against the plain path.

    .venv/bin/python -m bench.confidential [--runs 5] [--requests 200] [--concurrency 8] [--tokens 16]

Two parts, both written to bench/results/confidential.md (raw numbers in confidential.json):

1. **Primitives**: each cryptographic step timed in this process (time.perf_counter_ns loops, median
   of `--runs` loops): the client sealing a 1 KB request (X25519 keygen + ECDH + HKDF + AES-GCM +
   blake2b), the node opening it, a 100-byte stream chunk sealed by the node (AES-GCM + blake2b +
   Ed25519 signature of the usage message) and opened by the client, the Ed25519 signature alone and
   the proxy's verification of it.
2. **End to end**: one zero-latency node simulator (`--ttft-ms 0 --tokens-per-second 0`), atoma-proxy
   (core + facade, separate processes, on PostgreSQL, the optional features on as `bench.run` sets
   them) and the `atoma-proxy confidential-node` sidecar in front of the same simulator. Three
   columns, interleaved in every run: `direct` (the simulator itself), `plain` (chat through the
   facade, raw httpx) and `confidential` (the Python AsyncConfidentialClient over REST: lock, encrypt,
   request, verify and decrypt). Scenarios: non-streamed, streamed with `--tokens` chunks and with 1,
   one request at a time (`--requests` each: p50, p99, TTFT), then the same requests over
   `--concurrency` closed-loop workers (req/s). The servers' CPU (from /proc) is read before and
   after each scenario: CPU ms per request of the proxy (core + facade) and of the sidecar.

Derived, per run then the median of the runs: "added per request" = confidential p50 - plain p50;
"added per chunk" = (added for a stream of N chunks - added for a stream of 1) / (N - 1).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from nacl.signing import SigningKey

from atoma_proxy.clients import AsyncConfidentialClient
from atoma_proxy.confidential import crypto, envelope, signing
from bench import stacks
from bench.run import load_average

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PLAIN_MODEL = stacks.MODEL
CONF_MODEL = "atoma/sim-chat-confidential"
CONF_NODE = "bench-confidential"
DATABASE = os.environ.get("BENCH_CONFIDENTIAL_DATABASE", "atoma_bench_confidential")
COLUMNS = ("direct", "plain", "confidential")
REQUEST_BYTES = 1024  # a typical chat request body
CREDIT = 10**12  # micro-USD: the most one `balance credit` takes, far beyond what the bench spends
CHUNK_BYTES = 100  # a typical stream chunk


def log(message: str) -> None:
    print(f"[bench.confidential] {message}", file=sys.stderr, flush=True)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest rank, as bench.loadgen reports it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# ------------------------------------------------------------------------------------------- primitives


def _request_body(size: int = REQUEST_BYTES) -> bytes:
    head = {"model": CONF_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": ""}]}
    pad = size - len(orjson.dumps(head))
    head["messages"][0]["content"] = "x" * max(0, pad)  # type: ignore[index]
    return orjson.dumps(head)


def _chunk_body(size: int = CHUNK_BYTES) -> bytes:
    head = b'{"id":"c","choices":[{"index":0,"delta":{"content":"'
    tail = b'"}}]}'
    return head + b"t" * max(0, size - len(head) - len(tail)) + tail


def _per_op_us(operation: Callable[[], object], iterations: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(iterations):
        operation()
    return (time.perf_counter_ns() - start) / iterations / 1000


def primitives(runs: int, iterations: int) -> list[dict[str, Any]]:
    """Microseconds per operation, median of `runs` loops of `iterations` each."""
    node_private = crypto.new_private_key()
    node_public = crypto.public_key(node_private)
    identity = SigningKey.generate()
    verify_key = bytes(identity.verify_key)
    body, chunk = _request_body(), _chunk_body()
    usage = {"prompt_tokens": 250, "completion_tokens": 16, "total_tokens": 266}

    def seal() -> envelope.ClientSession:
        return envelope.seal_request(
            body, node_public, stack_small_id=1, model_name=CONF_MODEL, node_signing_key=verify_key
        )

    client = seal()
    _, node = envelope.open_request(client.request, node_private, identity)
    sealer = node.stream_sealer()
    sealed_chunk = sealer.seal_chunk(chunk, usage)
    message = sealed_chunk.signed_message(client.request)
    signature = signing.sign(identity, message)
    # Opening is stateful (chunk i after chunk i - 1): open a pre-sealed stream in order, fresh per loop.
    stream_sealer = node.stream_sealer(base_nonce=b"\x02" * 12)
    stream = [stream_sealer.seal_chunk(chunk, usage) for _ in range(iterations)]

    def open_stream() -> float:
        opener = client.stream_opener()
        start = time.perf_counter_ns()
        for item in stream:
            opener.open_chunk(item)
        return (time.perf_counter_ns() - start) / len(stream) / 1000

    key, nonce = client.key, crypto.new_nonce()
    operations: list[tuple[str, str, Callable[[], float]]] = [
        (
            "client: seal a request",
            f"{len(body)} B body: X25519 keygen + ECDH + HKDF-SHA256 + AES-256-GCM + blake2b-256",
            lambda: _per_op_us(seal, iterations),
        ),
        (
            "node: open a request",
            f"{len(body)} B: ECDH + HKDF + AES-GCM decrypt + blake2b check",
            lambda: _per_op_us(lambda: envelope.open_request(client.request, node_private, identity), iterations),
        ),
        (
            "node: seal a chunk",
            f"{len(chunk)} B: AES-GCM + blake2b + Ed25519 signature of the usage message",
            lambda: _per_op_us(lambda: node.stream_sealer().seal_chunk(chunk, usage), iterations),
        ),
        ("client: open a chunk", f"{len(chunk)} B: AES-GCM decrypt + blake2b + Ed25519 verify", open_stream),
        (
            "AES-256-GCM encrypt (chunk)",
            f"{len(chunk)} B, alone",
            lambda: _per_op_us(lambda: crypto.encrypt(key, nonce, chunk), iterations),
        ),
        (
            "node: Ed25519 usage signature",
            "usage message (blake2b-256 digest) signed",
            lambda: _per_op_us(lambda: signing.sign(identity, message), iterations),
        ),
        (
            "proxy: verify a usage signature",
            "rebuild the usage message + Ed25519 verify (per answer and per chunk)",
            lambda: _per_op_us(lambda: sealed_chunk.verify(client.request, verify_key), iterations),
        ),
        (
            "proxy: Ed25519 verify alone",
            "signing.verify of a 32-byte digest",
            lambda: _per_op_us(lambda: signing.verify(verify_key, message, signature), iterations),
        ),
    ]
    rows = []
    for name, what, measure in operations:
        measure()  # warm
        samples = [measure() for _ in range(runs)]
        rows.append({"operation": name, "what": what, "us": statistics.median(samples), "samples": samples})
    return rows


# -------------------------------------------------------------------------------------------- processes


@dataclass
class Deployment:
    node: stacks.ServerProcess
    core: stacks.ServerProcess
    facade: stacks.ServerProcess
    sidecar: stacks.ServerProcess
    api_key: str
    features: list[str]

    @property
    def facade_url(self) -> str:
        return self.facade.url

    def cpu(self) -> dict[str, float]:
        return {p.name: p.cpu_seconds() for p in (self.node, self.core, self.facade, self.sidecar)}

    def stop(self) -> None:
        for process in (self.facade, self.core, self.sidecar, self.node):
            process.stop()


def _seed(path: Path, key: SigningKey) -> Path:
    path.write_text(base64.b64encode(bytes(key)).decode())
    return path


@contextlib.contextmanager
def deployment(work: Path) -> Iterator[Deployment]:
    """node-sim (both models) <- sidecar (confidential model); core + facade with both nodes configured."""
    started: list[stacks.ServerProcess] = []
    try:
        node_port = stacks.free_port()
        node_args = [*stacks.ATOMA_PROXY, "node-sim", "--port", str(node_port), "--node-id", "bench-node"]
        node_args += ["--chat-model", PLAIN_MODEL, "--chat-model", CONF_MODEL, "--ttft-ms", "0"]
        node_args += ["--tokens-per-second", "0", "--reply-tokens", "16"]
        node = stacks.start_process(
            "node", node_args, ready_url=f"http://127.0.0.1:{node_port}/health", log=work / "node.log"
        )
        node.url = f"http://127.0.0.1:{node_port}"
        started.append(node)

        authority, identity = SigningKey.generate(), SigningKey.generate()
        database_url = stacks.reset_database(DATABASE)
        plan = stacks.feature_plan()
        sidecar_port, core_port, facade_port = stacks.free_port(), stacks.free_port(), stacks.free_port()
        sidecar_url = f"http://127.0.0.1:{sidecar_port}"
        authority_public = base64.b64encode(bytes(authority.verify_key)).decode()
        config = work / "atoma.toml"
        config.write_text(
            "[core]\nhealth_interval = 1.0\n\n"
            f"[confidential]\nattestation_authority_key = '{authority_public}'\n\n"
            f"[[nodes]]\nid = 'bench-node'\nurl = '{node.url}'\nmodels = ['{PLAIN_MODEL}']\n"
            "input_price_per_million = 100000\noutput_price_per_million = 400000\n\n"
            f"[[nodes]]\nid = '{CONF_NODE}'\nurl = '{sidecar_url}'\nmodels = ['{CONF_MODEL}']\n"
            "input_price_per_million = 100000\noutput_price_per_million = 400000\n"
            f"confidential_signing_key = '{base64.b64encode(bytes(identity.verify_key)).decode()}'\n"
        )
        core_target = f"127.0.0.1:{core_port}"
        env = {
            "ATOMA_CONFIG": str(config),
            "ATOMA_DATABASE__URL": database_url,
            "ATOMA_CORE__LISTEN": core_target,
            "ATOMA_FACADE__PORT": str(facade_port),
            "ATOMA_FACADE__CORE_TARGET": core_target,
            **plan.env,
        }
        if plan.uses_redis:
            stacks.flush_redis()
        stacks.run_atoma_command("db", "upgrade", env=env)
        api_key = stacks.run_atoma_command("keys", "create", "--email", stacks.BENCH_EMAIL, "--name", "bench", env=env)
        api_key = api_key.strip().splitlines()[-1].strip()
        stacks.run_atoma_command(
            "balance", "credit", "--email", stacks.BENCH_EMAIL, "--micro-usd", str(CREDIT), env=env
        )
        core = stacks.start_core(env, work / "core.log")
        started.append(core)
        sidecar_args = [*stacks.ATOMA_PROXY, "confidential-node", "--node-id", CONF_NODE, "--engine-url", node.url]
        sidecar_args += ["--core", core_target, "--port", str(sidecar_port)]
        sidecar_args += ["--signing-key-file", str(_seed(work / "node.key", identity))]
        sidecar_args += ["--attestation-authority-key-file", str(_seed(work / "authority.key", authority))]
        sidecar = stacks.start_process(  # /health is 200 once its key is registered with the core
            "sidecar", sidecar_args, ready_url=f"{sidecar_url}/health", log=work / "sidecar.log"
        )
        sidecar.url = sidecar_url
        started.append(sidecar)
        facade = stacks.start_process(
            "facade",
            [*stacks.ATOMA_PROXY, "facade"],
            ready_url=f"http://127.0.0.1:{facade_port}/health",
            log=work / "facade.log",
            env=env,
        )
        facade.url = f"http://127.0.0.1:{facade_port}"
        started.append(facade)
        yield Deployment(node, core, facade, sidecar, api_key, plan.features)
    finally:
        for process in reversed(started):
            process.stop()


# -------------------------------------------------------------------------------------------- requests


@dataclass
class Timing:
    latency_ms: float
    ttft_ms: float | None


class Columns:
    """One request of a scenario, per column; each returns its latency and time to the first token."""

    def __init__(self, deployment: Deployment) -> None:
        self.http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64))
        self.headers = {"authorization": f"Bearer {deployment.api_key}", "content-type": "application/json"}
        self.node_url = deployment.node.url + stacks.CHAT_PATH
        self.facade_url = deployment.facade_url + stacks.CHAT_PATH
        self.confidential = AsyncConfidentialClient.rest(deployment.facade_url, api_key=deployment.api_key)
        self.messages = [{"role": "user", "content": "Say something about confidential inference."}]

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.confidential.aclose()

    def call(self, column: str, stream: bool, tokens: int) -> Callable[[], Awaitable[Timing]]:
        if column == "confidential":
            return lambda: self._confidential(stream, tokens)
        url = self.node_url if column == "direct" else self.facade_url
        body = {"model": PLAIN_MODEL, "messages": self.messages, "max_tokens": tokens, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        encoded = orjson.dumps(body)
        return lambda: self._plain(url, encoded, stream)

    async def _plain(self, url: str, body: bytes, stream: bool) -> Timing:
        start = time.perf_counter()
        if not stream:
            response = await self.http.post(url, content=body, headers=self.headers)
            if response.status_code != 200 or not orjson.loads(response.content)["choices"]:
                raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:300]}")
            return Timing((time.perf_counter() - start) * 1000, None)
        ttft, done = None, False
        async with self.http.stream("POST", url, content=body, headers=self.headers) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code} {(await response.aread())[:300]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                elif ttft is None and _has_content(orjson.loads(data)):
                    ttft = time.perf_counter()
        if not done or ttft is None:
            raise RuntimeError(f"{url}: the stream ended without content or [DONE]")
        end = time.perf_counter()
        return Timing((end - start) * 1000, (ttft - start) * 1000)

    async def _confidential(self, stream: bool, tokens: int) -> Timing:
        start = time.perf_counter()
        if not stream:
            result = await self.confidential.chat_completion_create(
                model=CONF_MODEL, messages=self.messages, max_tokens=tokens
            )
            if not result.data["choices"]:
                raise RuntimeError("confidential: an answer without choices")
            return Timing((time.perf_counter() - start) * 1000, None)
        ttft = None
        chunks = self.confidential.chat_completion(model=CONF_MODEL, messages=self.messages, max_tokens=tokens)
        async for chunk in chunks:
            if ttft is None and _has_content(chunk):
                ttft = time.perf_counter()
        if ttft is None:
            raise RuntimeError("confidential: the stream carried no content")
        end = time.perf_counter()
        return Timing((end - start) * 1000, (ttft - start) * 1000)


def _has_content(event: Any) -> bool:
    choices = event.get("choices") if isinstance(event, dict) else None
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


async def _sequential(call: Callable[[], Awaitable[Timing]], count: int) -> list[Timing]:
    return [await call() for _ in range(count)]


async def _closed_loop(call: Callable[[], Awaitable[Timing]], count: int, concurrency: int) -> float:
    """`count` requests over `concurrency` workers, each starting its next when the last ended; req/s."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


def _cpu_ms_per_request(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    delta = {name: (after[name] - before[name]) * 1000 / count for name in before}
    return {
        "proxy": delta["core"] + delta["facade"],
        "core": delta["core"],
        "facade": delta["facade"],
        "sidecar": delta["sidecar"],
        "node": delta["node"],
        "client": delta["client"],  # this process: the HTTP client, and the confidential client's crypto
    }


SCENARIOS = ("nonstream", "stream", "stream1")


def _scenario(name: str, tokens: int) -> tuple[bool, int]:
    return {"nonstream": (False, tokens), "stream": (True, tokens), "stream1": (True, 1)}[name]


async def measure_run(
    deployment: Deployment, columns: Columns, run: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One run: every scenario, every column in turn (rotated per run), sequential then concurrent."""
    order = list(COLUMNS[run % 3 :] + COLUMNS[: run % 3])
    records = []
    for scenario in SCENARIOS:
        stream, tokens = _scenario(scenario, args.tokens)
        for column in order:
            call = columns.call(column, stream, tokens)
            await _sequential(call, max(1, args.requests // 20))  # warm connections and caches
            before = {**deployment.cpu(), "client": time.process_time()}
            timings = await _sequential(call, args.requests)
            after = {**deployment.cpu(), "client": time.process_time()}
            cpu = _cpu_ms_per_request(before, after, args.requests)
            rps = await _closed_loop(call, args.requests, args.concurrency)
            latencies = [t.latency_ms for t in timings]
            ttfts = [t.ttft_ms for t in timings if t.ttft_ms is not None]
            records.append(
                {
                    "run": run,
                    "scenario": scenario,
                    "column": column,
                    "p50_ms": _percentile(latencies, 0.5),
                    "p99_ms": _percentile(latencies, 0.99),
                    "ttft_p50_ms": _percentile(ttfts, 0.5),
                    "ttft_p99_ms": _percentile(ttfts, 0.99),
                    "rps": rps,
                    "cpu_ms": cpu,
                }
            )
            log(
                f"run {run + 1} {scenario} {column}: p50 {records[-1]['p50_ms']:.2f} ms,"
                f" p99 {records[-1]['p99_ms']:.2f} ms, {rps:.0f} req/s at c={args.concurrency},"
                f" proxy {cpu['proxy']:.2f} / sidecar {cpu['sidecar']:.2f} CPU ms/req"
            )
    return records


# -------------------------------------------------------------------------------------------- derived


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, column): medians over the runs."""
    rows = []
    for scenario in SCENARIOS:
        for column in COLUMNS:
            group = [r for r in records if (r["scenario"], r["column"]) == (scenario, column)]
            if not group:
                continue

            def med(key: str, group: list[dict[str, Any]] = group) -> float | None:
                return _median([r[key] for r in group if r[key] is not None])

            rows.append(
                {
                    "scenario": scenario,
                    "column": column,
                    "runs": len(group),
                    **{key: med(key) for key in ("p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms", "rps")},
                    "proxy_cpu_ms": _median([r["cpu_ms"]["proxy"] for r in group]),
                    "sidecar_cpu_ms": _median([r["cpu_ms"]["sidecar"] for r in group]),
                    "client_cpu_ms": _median([r["cpu_ms"]["client"] for r in group]),
                }
            )
    return rows


def derived(records: list[dict[str, Any]], tokens: int) -> list[dict[str, Any]]:
    """Per run: confidential minus plain (and plain minus direct); then the median over the runs."""
    by = {(r["run"], r["scenario"], r["column"]): r for r in records}
    runs = sorted({r["run"] for r in records})

    def per_run(value: Callable[[int], float | None]) -> float | None:
        values = []
        for run in runs:
            with contextlib.suppress(KeyError, TypeError):
                result = value(run)
                if result is not None:
                    values.append(result)
        return _median(values)

    def diff(run: int, scenario: str, key: str, a: str = "confidential", b: str = "plain") -> float:
        return by[(run, scenario, a)][key] - by[(run, scenario, b)][key]

    def cpu(run: int, scenario: str, who: str, column: str = "confidential") -> float:
        return float(by[(run, scenario, column)]["cpu_ms"][who])

    rows: list[dict[str, Any]] = [
        {
            "what": "proxy path (plain - direct), non-streamed p50",
            "ms": per_run(lambda run: diff(run, "nonstream", "p50_ms", "plain", "direct")),
        },
        {
            "what": f"proxy path (plain - direct), streamed ({tokens} chunks) p50",
            "ms": per_run(lambda run: diff(run, "stream", "p50_ms", "plain", "direct")),
        },
        {
            "what": "confidentiality added per request, non-streamed p50",
            "ms": per_run(lambda run: diff(run, "nonstream", "p50_ms")),
        },
        {
            "what": "confidentiality added per request, non-streamed p99",
            "ms": per_run(lambda run: diff(run, "nonstream", "p99_ms")),
        },
        {
            "what": f"confidentiality added per request, streamed ({tokens} chunks) p50",
            "ms": per_run(lambda run: diff(run, "stream", "p50_ms")),
        },
        {
            "what": f"confidentiality added to TTFT, streamed ({tokens} chunks) p50",
            "ms": per_run(lambda run: diff(run, "stream", "ttft_p50_ms")),
        },
        {
            "what": "confidentiality added per request, streamed (1 chunk) p50",
            "ms": per_run(lambda run: diff(run, "stream1", "p50_ms")),
        },
    ]
    if tokens > 1:
        rows.append(
            {
                "what": f"confidentiality added per chunk (stream of {tokens} vs 1, p50)",
                "ms": per_run(
                    lambda run: (diff(run, "stream", "p50_ms") - diff(run, "stream1", "p50_ms")) / (tokens - 1)
                ),
            }
        )

    def cpu_rows(who: str) -> list[dict[str, Any]]:
        found = [
            {
                "what": f"{who} CPU per confidential request, non-streamed",
                "cpu_ms": per_run(lambda run: cpu(run, "nonstream", who)),
            }
        ]
        if tokens > 1:
            found.append(
                {
                    "what": f"{who} CPU per chunk (stream of {tokens} vs 1)",
                    "cpu_ms": per_run(lambda run: (cpu(run, "stream", who) - cpu(run, "stream1", who)) / (tokens - 1)),
                }
            )
        return found

    for who in ("proxy", "sidecar", "client"):
        rows += cpu_rows(who)
    rows.append(
        {
            "what": "proxy CPU added per request by confidentiality, non-streamed (confidential - plain)",
            "cpu_ms": per_run(lambda run: cpu(run, "nonstream", "proxy") - cpu(run, "nonstream", "proxy", "plain")),
        }
    )
    return rows


# -------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


SCENARIO_TITLES = {
    "nonstream": "non-streamed",
    "stream": "streamed, {tokens} chunks",
    "stream1": "streamed, 1 chunk",
}


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    tokens = meta["tokens"]
    out = [
        "# What confidentiality adds: atoma-proxy benchmark",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['nproc']} CPUs, {meta['kernel']}, Python {meta['python']}; git {meta['git_commit']}",
        f"- load average at start {meta['load_average_start']}, at end {meta.get('load_average_end', '?')}",
        f"- {meta['runs']} runs, columns interleaved (order rotated per run); per run and column {meta['requests']}"
        f" sequential requests (p50/p99/TTFT), then {meta['requests']} over {meta['concurrency']} closed-loop"
        " workers (req/s); medians of the runs shown",
        "- node simulator: `--ttft-ms 0 --tokens-per-second 0` (zero latency), the same process behind every column",
        f"- proxy features on: {'; '.join(results['features'])}",
        "",
        "## Primitives (this process, one core)",
        "",
        f"Median of {meta['runs']} loops of {meta['iterations']} operations each.",
        "",
        "| operation | what | us per op |",
        "|---|---|---|",
    ]
    out += [f"| {row['operation']} | {row['what']} | {row['us']:.1f} |" for row in results["primitives"]]
    out += [
        "",
        "## End to end, concurrency 1 (and throughput at concurrency " + str(meta["concurrency"]) + ")",
        "",
        "`direct` = the node simulator itself; `plain` = chat through the facade (raw httpx);"
        " `confidential` = AsyncConfidentialClient over REST through the facade and the sidecar"
        " (lock + encrypt + request + verify + decrypt, all counted).",
        "",
        f"| scenario | column | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | req/s at c={meta['concurrency']}"
        " | proxy CPU ms/req | sidecar CPU ms/req | client CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        out.append(
            "| "
            + " | ".join(
                [
                    SCENARIO_TITLES[row["scenario"]].format(tokens=tokens),
                    row["column"],
                    _fmt(row["p50_ms"]),
                    _fmt(row["p99_ms"]),
                    _fmt(row["ttft_p50_ms"]),
                    _fmt(row["ttft_p99_ms"]),
                    _fmt(row["rps"], 0),
                    _fmt(row["proxy_cpu_ms"]) if row["column"] != "direct" else "-",
                    _fmt(row["sidecar_cpu_ms"]) if row["column"] == "confidential" else "-",
                    _fmt(row["client_cpu_ms"]),
                ]
            )
            + " |"
        )
    out += [
        "",
        "## Derived (per run, then the median of the runs)",
        "",
        "| figure | ms | CPU ms |",
        "|---|---|---|",
    ]
    for row in results["derived"]:
        ms, cpu = row.get("ms"), row.get("cpu_ms")
        out.append(
            f"| {row['what']} | {_fmt(ms, 3, signed=True) if 'ms' in row else '-'}"
            f" | {_fmt(cpu, 3) if 'cpu_ms' in row else '-'} |"
        )
    out += [
        "",
        "Read: the confidential column pays two HTTP round trips (lock, then request) where plain pays one,"
        " plus the client's sealing and opening in this process; the sidecar is one more hop and process."
        " CPU ms/req is a process's CPU time (from /proc) over the sequential requests, divided by their number"
        " (clock ticks of 10 ms: use enough `--requests`); `proxy` = core + facade, `client` = the bench process"
        " itself (HTTP client, and for `confidential` the client's crypto)."
        " On a shared machine compare the interleaved columns, not absolute numbers.",
        "",
    ]
    return "\n".join(out)


def _git_commit() -> str:
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    return "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.confidential", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs; medians are reported (5)")
    parser.add_argument("--requests", type=int, default=200, help="requests per column and scenario per run (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop workers for req/s (8)")
    parser.add_argument("--tokens", type=int, default=16, help="chunks of the long stream (16)")
    parser.add_argument("--iterations", type=int, default=2000, help="operations per primitive loop (2000)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="output directory (bench/results)")
    args = parser.parse_args(argv)
    if min(args.runs, args.requests, args.concurrency, args.tokens, args.iterations) < 1:
        parser.error("--runs, --requests, --concurrency, --tokens and --iterations must be >= 1")
    return args


async def _until_served(columns: Columns, patience: float = 60) -> None:
    """The core learns the sidecar's key and health a little after both are up: wait for a first answer."""
    deadline = time.monotonic() + patience
    while True:
        try:
            for column in COLUMNS:
                await columns.call(column, False, 1)()
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the deployment does not serve: {error}") from error
            await asyncio.sleep(0.2)


async def _end_to_end(deployment: Deployment, args: argparse.Namespace) -> list[dict[str, Any]]:
    columns = Columns(deployment)
    try:
        await _until_served(columns)
        records: list[dict[str, Any]] = []
        for run in range(args.runs):
            records += await measure_run(deployment, columns, run, args)
        return records
    finally:
        await columns.aclose()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python -m bench.confidential" + (" " + shlex.join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    if argv is not None:
        command = "python -m bench.confidential " + shlex.join(argv)
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "nproc": os.cpu_count(),
        "kernel": platform.platform(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "load_average_start": load_average(),
        **{key: getattr(args, key) for key in ("runs", "requests", "concurrency", "tokens", "iterations")},
    }
    log("primitives")
    prims = primitives(args.runs, args.iterations)
    for row in prims:
        log(f"  {row['operation']}: {row['us']:.1f} us")
    work = Path(tempfile.mkdtemp(prefix="atoma-bench-confidential-"))
    log(f"logs and configs in {work}")
    with deployment(work) as running:
        records = asyncio.run(_end_to_end(running, args))
        features = running.features
    meta["load_average_end"] = load_average()
    results = {
        "meta": meta,
        "features": features,
        "primitives": prims,
        "rows": aggregate(records),
        "derived": derived(records, args.tokens),
        "records": records,
    }
    text = render(results)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "confidential.md").write_text(text)
    (args.results / "confidential.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(text)
    log(f"wrote {args.results / 'confidential.md'} and confidential.json")


if __name__ == "__main__":
    main()
