"""The inference request lifecycle, shared by every /v1 inference endpoint.

    receive -> record -> auth -> parse (400/404) -> fault draw -> [error: answer error_status]
            -> wait for a slot (FIFO, "waiting") -> [hang: until the client leaves]
            -> stream: 200 + opening chunks; first token after ttft_ms; then tokens_per_second
               non-stream: the whole body when the last token would be generated
            -> [drop: close the connection after drop_after_tokens, no clean end]

While a request waits, hangs or generates, a watcher task reads the ASGI `receive` channel: an
`http.disconnect` there means the client left, so the work is cancelled, which frees its slot, and
the request counts as cancelled. (uvicorn's `send` silently discards writes to a closed
connection, so writing cannot reveal a departed client; `receive` does, promptly.) A request with
nothing to wait for (non-stream, no delay, a free slot, no fault) skips the watcher: the fast path.

A drop closes the connection's transport directly (see `asgi.server_transport`), so the client
sees a truncated chunked body or no response at all; the server logs nothing, since it registers
the disconnect before the handler returns. Without a reachable transport (not uvicorn) the drop
raises instead, which also aborts the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from atoma_proxy.nodesim.asgi import (
    SSE,
    RequestError,
    header,
    injected_error,
    read_body,
    request_headers,
    send_bytes,
    send_error,
    server_transport,
    wait_disconnect,
)
from atoma_proxy.nodesim.hostile import is_hostile, serve_hostile
from atoma_proxy.nodesim.jobs import Job
from atoma_proxy.nodesim.state import Fault, SimState

__all__ = ["SSE_HEADERS", "Generation", "InferenceEndpoint", "Parser", "bad_json", "unauthorized"]

Parser = Callable[[dict[str, Any], SimState, Scope], Job]

SSE_HEADERS = [(b"content-type", SSE), (b"cache-control", b"no-cache")]


def unauthorized() -> RequestError:
    return RequestError(401, "Incorrect API key provided.", code="invalid_api_key")


def bad_json() -> RequestError:
    return RequestError(400, "We could not parse the JSON body of your request: expected a JSON object.")


class InferenceEndpoint:
    """The ASGI app of one inference route; `parse` turns a body into a Job or raises RequestError."""

    def __init__(self, state: SimState, parse: Parser) -> None:
        self.state = state
        self.parse = parse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        state.stats.requests_total += 1
        body = await read_body(receive)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        state.record(scope["path"], request_headers(scope), payload)
        if not state.authorized(header(scope, b"authorization")):
            await send_error(send, unauthorized())
            return
        if state.atoma is not None:  # the Atoma protocol: a signed request, signed answers
            refused = state.atoma.check_request(
                body,
                header(scope, b"x-signature"),
                user_id=header(scope, b"x-user-id"),
                stack_small_id=header(scope, b"x-stack-small-id"),
            )
            if refused is not None:
                await send_error(send, refused)
                return
            send = state.atoma.signing_send(send)
        try:
            if not isinstance(payload, dict):
                raise bad_json()
            job = self.parse(payload, state, scope)
        except RequestError as error:
            await send_error(send, error)
            return
        fault = state.draw_fault()
        if fault is Fault.ERROR:
            state.stats.errors_injected += 1
            await send_error(send, injected_error(state.config.error_status))
            return
        if is_hostile(state.config):
            await serve_hostile(state.config, job, receive, send)
            return
        await Generation(state, job, fault, scope, receive, send).run()


class Generation:
    """One admitted-or-queued request: pacing, faults, disconnect handling and its accounting."""

    def __init__(self, state: SimState, job: Job, fault: Fault | None, scope: Scope, receive: Receive, send: Send):
        self.state, self.job, self.fault = state, job, fault
        self.scope, self.receive, self.send = scope, receive, send
        self.metrics = state.metrics.by_model[job.model]
        self.loop = asyncio.get_running_loop()
        self.arrival = self.loop.time()
        self.first_token_at = self.last_token_at = self.arrival
        self.emitted = 0  # tokens sent per choice
        self.finished = False  # the last byte of the reply went to the server
        self.dropped = False

    def _instant(self) -> bool:
        config = self.state.config
        return config.ttft_ms <= 0 and (config.tokens_per_second <= 0 or self.job.steps <= 1)

    async def run(self) -> None:
        job = self.job
        if self.fault is None and not job.stream and self._instant() and self.state.limiter.try_acquire():
            self._admitted()
            try:
                self.emitted = job.steps
                self.first_token_at = self.last_token_at = self.loop.time()
                await send_bytes(self.send, 200, job.render())
                self.finished = True
            finally:
                self._released()
            self._completed()
            return
        await self._guarded()

    async def _guarded(self) -> None:
        work = asyncio.ensure_future(self._work())
        gone = asyncio.ensure_future(wait_disconnect(self.receive))
        client_left = False
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and not (self.finished or self.dropped):
                client_left = True
                work.cancel()  # stop generating; the slot is released as the work unwinds
            await asyncio.wait((work,))
            if not work.cancelled() and work.exception() is None and self.dropped:
                await gone  # let the server register the disconnect before we return
        finally:
            work.cancel()
            gone.cancel()
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved, so never logged as unhandled
        if client_left:
            self.state.stats.cancelled += 1
            self.metrics.cancelled.inc()
            return
        work.result()  # re-raises a failure of the work itself
        if self.finished:
            self._completed()

    async def _work(self) -> None:
        state, job = self.state, self.job
        if not state.limiter.try_acquire():
            load = state.load[job.model]
            load[1] += 1
            try:
                await state.limiter.acquire()
            finally:
                load[1] -= 1
        self._admitted()
        try:
            if self.fault is Fault.HANG:
                state.stats.hung += 1
                await self.loop.create_future()  # never resolved: ends when the client leaves
            config = state.config
            interval = 1.0 / config.tokens_per_second if config.tokens_per_second > 0 else 0.0
            start = self.loop.time() + config.ttft_ms / 1000.0  # when token 0 is due
            drop_at = min(config.drop_after_tokens, job.steps) if self.fault is Fault.DROP else None
            if job.stream:
                await self._stream(start, interval, drop_at)
            else:
                await self._unary(start, interval, drop_at)
        finally:
            self._released()

    async def _sleep_until(self, deadline: float) -> None:
        delay = deadline - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _stream(self, start: float, interval: float, drop_at: int | None) -> None:
        job, send = self.job, self.send
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        opening = job.stream_open()
        if opening:
            await send({"type": "http.response.body", "body": opening, "more_body": True})
        for step in range(job.steps):
            if step == drop_at:
                break
            await self._sleep_until(start + step * interval)
            await send({"type": "http.response.body", "body": job.stream_token(step), "more_body": True})
            self.emitted = step + 1
            self.last_token_at = self.loop.time()
            if step == 0:
                self.first_token_at = self.last_token_at
        if drop_at is not None:
            self._drop()
            return
        await send({"type": "http.response.body", "body": job.stream_close(), "more_body": False})
        self.finished = True

    async def _unary(self, start: float, interval: float, drop_at: int | None) -> None:
        job = self.job
        if drop_at is not None:
            await self._sleep_until(start + drop_at * interval)
            self._drop()
            return
        await self._sleep_until(start + max(job.steps - 1, 0) * interval)
        self.emitted = job.steps
        self.first_token_at = min(start, self.loop.time())
        self.last_token_at = self.loop.time()
        await send_bytes(self.send, 200, job.render())
        self.finished = True

    def _drop(self) -> None:
        self.dropped = True
        self.state.stats.dropped += 1
        transport = server_transport(self.scope)
        if transport is None:
            raise ConnectionAbortedError("nodesim: injected connection drop")
        transport.close()

    # Accounting -----------------------------------------------------------------------------------

    def _admitted(self) -> None:
        self.state.load[self.job.model][0] += 1
        self.metrics.prompt_tokens.inc(self.job.prompt_tokens)

    def _released(self) -> None:
        state, job = self.state, self.job
        state.limiter.release()
        state.load[job.model][0] -= 1
        if self.emitted:
            self.metrics.generation_tokens.inc(self.emitted * job.choice_count)

    def _completed(self) -> None:
        metrics = self.metrics
        self.state.stats.completed += 1
        metrics.success[self.job.finish_reason].inc()
        metrics.e2e.observe(self.loop.time() - self.arrival)
        if self.job.steps:
            metrics.ttft.observe(self.first_token_at - self.arrival)
        if self.emitted > 1:
            metrics.tpot.observe((self.last_token_at - self.first_token_at) / (self.emitted - 1))
