"""A lean closed-loop HTTP/1.1 load generator for OpenAI-style chat completions.

Each worker owns one keep-alive connection (an `asyncio.Protocol` fed to an `httptools` response
parser) and sends the same pre-encoded request again as soon as the previous answer ended, so the
offered concurrency is exactly `concurrency`. Per request it measures the end-to-end latency (request
written -> last body byte) and, for streams, the time to first token: the first SSE `data:` event
whose `choices[0].delta.content` is a non-empty string (the role-only opening chunk does not count).
Only events up to that one are JSON-decoded; the rest of a stream is scanned as bytes for the in-band
error event and the closing `data: [DONE]`.

Requests that *end* inside the measurement window [start + warmup, start + warmup + duration] are
counted; throughput is that count over the window length. When the window closes no new request is
started and in-flight ones are drained for up to `drain_timeout` (not counted), then cut, so the
server is idle before the next run.

It runs in its own process (`python -m bench.loadgen ...`, printing one JSON object), optionally as
several processes (`--processes N`, concurrency split between them, samples merged), which is how
the harness shows the client is not the bottleneck. uvloop is used when importable.

    python -m bench.loadgen --url http://127.0.0.1:8100/v1/chat/completions --concurrency 32 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

DEFAULT_MODEL = "atoma/sim-chat"
_DONE = b"data: [DONE]"
_ERROR_EVENT = b'data: {"error"'


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard and for how long."""

    url: str
    concurrency: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    stream: bool = False
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    max_tokens: int | None = None
    timeout: float = 60.0  # per request
    drain_timeout: float = 15.0  # waiting for in-flight requests after the window (then they are cut)

    def body(self) -> bytes:
        payload: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": "Say something."}]}
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if self.stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)

    def request_bytes(self) -> bytes:
        parts = urlsplit(self.url)
        host = parts.netloc
        path = parts.path or "/"
        body = self.body()
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            "Accept: text/event-stream" if self.stream else "Accept: application/json",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
        ]
        if self.api_key:
            lines.append(f"Authorization: Bearer {self.api_key}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Samples:
    """Raw measurements of one process; merged across processes before summarising."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests in the window
    ttfts: list[float] = field(default_factory=list)  # seconds, streams in the window
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count, in the window
    streams_with_usage: int = 0
    window: float = 0.0
    cpu_seconds: float = 0.0  # this process's user+system CPU during the window
    connections: int = 0  # connections opened over the whole run (reconnects included)
    started: int = 0  # requests sent over the whole run (warm-up and drain included)
    late_start: float = 0.0  # seconds this process started after `start_at` (eats into the warm-up)

    def merge(self, other: Samples) -> None:
        self.latencies.extend(other.latencies)
        self.ttfts.extend(other.ttfts)
        self.errors = dict(Counter(self.errors) + Counter(other.errors))
        self.streams_with_usage += other.streams_with_usage
        self.window = max(self.window, other.window)
        self.cpu_seconds += other.cpu_seconds
        self.connections += other.connections
        self.started += other.started
        self.late_start = max(self.late_start, other.late_start)


class RequestFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Response:
    __slots__ = ("content_seen", "done", "error_event", "first_token", "pending", "status", "usage")

    def __init__(self) -> None:
        self.status = 0
        self.first_token = 0.0
        self.content_seen = False
        self.pending = b""  # an SSE line not yet complete (only until the first token)
        self.done = False
        self.usage = False
        self.error_event = False


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; `request()` sends and waits for a whole response."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self.waiter: asyncio.Future[_Response] | None = None
        self.response = _Response()
        self.tail = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("protocol_error")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("connection_closed")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.response = _Response()
        self.tail = b""

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if not self.stream or response.status != 200:
            return
        if not response.content_seen:
            self._scan_for_first_token(response, body)
        if _ERROR_EVENT in body:
            response.error_event = True
        if not response.usage and b'"usage":{' in body:
            response.usage = True
        self.tail = (self.tail + body)[-64:]

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        response = self.response
        if self.stream and response.status == 200:
            response.done = _DONE in self.tail
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # own
    def _scan_for_first_token(self, response: _Response, body: bytes) -> None:
        data = response.pending + body
        lines = data.split(b"\n")
        response.pending = lines.pop()
        for line in lines:
            if not line.startswith(b"data: {"):
                continue
            try:
                event = orjson.loads(line[6:])
                content = event["choices"][0]["delta"].get("content")
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                continue
            if isinstance(content, str) and content:
                response.first_token = time.perf_counter()
                response.content_seen = True
                response.pending = b""
                return

    def _fail(self, kind: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(RequestFailed(kind))

    def request(self, payload: bytes) -> asyncio.Future[_Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def run_async(spec: LoadSpec, concurrency: int | None = None, start_at: float | None = None) -> Samples:
    """Run `concurrency` (default spec.concurrency) closed-loop workers in the running loop.

    `start_at` is a time.perf_counter() instant (CLOCK_MONOTONIC, shared by all processes of the
    machine), so several processes use the same window; default: now.
    """
    concurrency = spec.concurrency if concurrency is None else concurrency
    start_at = time.perf_counter() if start_at is None else start_at
    loop = asyncio.get_running_loop()
    parts = urlsplit(spec.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = spec.request_bytes()
    window_start = start_at + spec.warmup
    window_end = window_start + spec.duration
    samples = Samples(late_start=max(0.0, time.perf_counter() - start_at))
    errors: Counter[str] = Counter()
    latencies, ttfts = samples.latencies, samples.ttfts

    async def connect() -> _Connection:
        samples.connections += 1
        _, protocol = await loop.create_connection(lambda: _Connection(spec.stream), host, port)
        return protocol

    async def worker() -> None:
        connection: _Connection | None = None
        try:
            while True:
                now = time.perf_counter()
                if now >= window_end:
                    return
                try:
                    if connection is None or connection.closed:
                        connection = await asyncio.wait_for(connect(), spec.timeout)
                    samples.started += 1
                    sent = time.perf_counter()
                    response = await asyncio.wait_for(connection.request(payload), spec.timeout)
                    ended = time.perf_counter()
                except (RequestFailed, OSError, TimeoutError) as error:
                    ended = time.perf_counter()
                    if window_start <= ended <= window_end:
                        errors[error.kind if isinstance(error, RequestFailed) else type(error).__name__] += 1
                    if connection is not None:
                        connection.close()
                        connection = None
                    if isinstance(error, OSError):
                        await asyncio.sleep(0.05)  # refused/reset: do not spin
                    continue
                if not connection.keep_alive:
                    connection.close()
                    connection = None
                if not window_start <= ended <= window_end:
                    continue
                if response.status != 200:
                    errors[f"http_{response.status}"] += 1
                elif spec.stream and response.error_event:
                    errors["stream_error_event"] += 1
                elif spec.stream and not (response.done and response.content_seen):
                    errors["stream_incomplete"] += 1
                else:
                    latencies.append(ended - sent)
                    if spec.stream:
                        ttfts.append(response.first_token - sent)
                        samples.streams_with_usage += response.usage
        finally:
            if connection is not None:
                connection.close()

    delay = start_at - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    cpu_at_start: float | None = None
    # CPU time of the window only: sample the process clock when the window opens and closes.
    await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
    cpu_at_start = time.process_time()
    await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
    samples.cpu_seconds = time.process_time() - cpu_at_start
    samples.window = spec.duration
    _, pending = await asyncio.wait(tasks, timeout=spec.drain_timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    samples.errors = dict(errors)
    return samples


def event_loop_name() -> str:
    """ "uvloop" when it is installed (and BENCH_NO_UVLOOP is not set), else "asyncio"."""
    if os.environ.get("BENCH_NO_UVLOOP"):
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_in_this_process(spec: LoadSpec, concurrency: int, start_at: float) -> Samples:
    loop_factory = None
    if event_loop_name() == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run_async(spec, concurrency, start_at))


def _child(spec: LoadSpec, concurrency: int, start_at: float, queue: Any) -> None:
    queue.put(asdict(run_in_this_process(spec, concurrency, start_at)))


def run_load(spec: LoadSpec, processes: int = 1, start_at: float | None = None) -> Samples:
    """Run the load in this process (processes=1) or split over `processes` child processes.

    `start_at` (a time.perf_counter() value, comparable across processes) lets a caller that
    samples the servers know exactly when the window opens: at start_at + warmup.
    """
    if start_at is None:
        start_at = time.perf_counter() + (0.05 if processes == 1 else 1.0)  # children need time to start
    if processes == 1:
        return run_in_this_process(spec, spec.concurrency, start_at)
    shares = [spec.concurrency // processes + (i < spec.concurrency % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_child, args=(spec, share, start_at, queue)) for share in shares if share > 0]
    for child in children:
        child.start()
    merged = Samples()
    for _ in children:
        merged.merge(Samples(**queue.get()))
    for child in children:
        child.join()
    return merged


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Samples, spec: LoadSpec, processes: int = 1) -> dict[str, Any]:
    """The numbers the report uses (latencies in milliseconds)."""
    ok = len(samples.latencies)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "concurrency": spec.concurrency,
        "stream": spec.stream,
        "window_s": samples.window,
        "ok": ok,
        "errors": samples.errors,
        "rps": round(ok / samples.window, 2) if samples.window else 0.0,
        "p50_ms": ms(percentile(samples.latencies, 50)),
        "p99_ms": ms(percentile(samples.latencies, 99)),
        "ttft_p50_ms": ms(percentile(samples.ttfts, 50)),
        "ttft_p99_ms": ms(percentile(samples.ttfts, 99)),
        "streams_with_usage": samples.streams_with_usage,
        "client_processes": processes,
        "client_cpu_s": round(samples.cpu_seconds, 3),
        "client_cpu_util": round(samples.cpu_seconds / samples.window, 3) if samples.window else None,
        "client_cpu_us_per_request": round(samples.cpu_seconds / ok * 1e6, 1) if ok else None,
        "connections": samples.connections,
        "late_start_s": round(samples.late_start, 3),
        "started": samples.started,
        "event_loop": event_loop_name(),
    }


def parse_args(argv: list[str] | None = None) -> tuple[LoadSpec, int, float | None]:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="full URL of the chat completions endpoint")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="measurement window, seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window (not counted)")
    parser.add_argument("--stream", action="store_true", help="stream with stream_options.include_usage")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument("--processes", type=int, default=1, help="client processes sharing the concurrency")
    parser.add_argument(
        "--start-at", type=float, default=None, help="time.perf_counter() instant to start at (CLOCK_MONOTONIC)"
    )
    parser.add_argument(
        "--handshake",
        action="store_true",
        help="print READY once imported, then read the start instant (a time.perf_counter() value) from stdin",
    )
    args = parser.parse_args(argv)
    spec = LoadSpec(
        url=args.url,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        stream=args.stream,
        model=args.model,
        api_key=args.api_key,
        max_tokens=args.max_tokens,
        timeout=args.timeout,
    )
    start_at = args.start_at
    if args.handshake:  # the caller picks the start once this process is ready, so nothing starts late
        print("READY", flush=True)
        start_at = float(sys.stdin.readline())
    return spec, max(1, args.processes), start_at


def main(argv: list[str] | None = None) -> None:
    spec, processes, start_at = parse_args(argv)
    samples = run_load(spec, processes, start_at)
    json.dump(summarize(samples, spec, processes), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
