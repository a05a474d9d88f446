"""Confidential clients: calls shaped like the plain ones, encrypted end to end (docs/confidential.md).

    async with AsyncConfidentialClient.rest("http://127.0.0.1:8080", api_key="sk-...") as client:
        result = await client.chat_completion_create(model="m", messages=[{"role": "user", "content": "hi"}])
        print(result.data["choices"][0]["message"]["content"], result.usage)
        async for chunk in client.chat_completion(model="m", messages=[...]):   # streamed, decrypted chunks
            print(chunk["choices"][0]["delta"].get("content", ""), end="")

`await AsyncConfidentialClient.grpc("127.0.0.1:50051", api_key=...)` does the same over gRPC, and
`ConfidentialClient` is the blocking twin. Each call locks a node, encrypts to its current key with a
one-off key, checks every answer's hash and the node's signature, and opens streams strictly in
order. A stale node key, an expired lock, or a node that fails or misbehaves before the first
answer is retried inside the call (a new lock, so another key or node, a fresh encryption) until
`max_attempts` or the deadline; after the first streamed chunk nothing is retried. Failures raise
ConfidentialError with the proxy's `reason`.
"""

# ruff: noqa: ASYNC109 - `timeout` is the deadline of the whole call, passed on to the proxy.
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import httpx
import orjson

from atoma_proxy.confidential import crypto, envelope, signing, wire
from atoma_proxy.wire.metadata import AUTHORIZATION

ENDPOINTS = ("chat/completions", "completions", "embeddings", "images/generations")
NODE_AT_FAULT = frozenset(
    {"NODE_FAILED", "NODE_TIMEOUT", "NODE_SIGNATURE_INVALID", "NODE_STREAM_INVALID", "ANSWER_INVALID"}
)
RETRYABLE = frozenset(
    {
        "STALE_NODE_KEY",
        "LOCK_EXPIRED",
        "LOCK_NOT_FOUND",
        "NODE_FAILED",
        "NODE_TIMEOUT",
        "NO_NODE_AVAILABLE",
        "NODE_SIGNATURE_INVALID",
        "NODE_STREAM_INVALID",
        "ANSWER_INVALID",
    }
)
T = TypeVar("T")


class ConfidentialError(Exception):
    """A confidential call failed; `reason` is the proxy's stable UPPER_SNAKE reason (or the client's own:
    ANSWER_INVALID when an answer does not decrypt or verify, STREAM_OUT_OF_ORDER, STREAM_TRUNCATED)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.reason in RETRYABLE


@dataclass(frozen=True)
class LockGrant:
    public_key: bytes
    node_id: str
    stack_small_id: int
    node_signing_key: bytes
    expires_at: float
    max_num_tokens: int


@dataclass(frozen=True)
class ConfidentialResult:
    """A decrypted answer: OpenAI's JSON, the usage the node signed, the node that served it."""

    data: Any
    usage: dict[str, int] | None
    node_id: str
    attempts: int


class ConfidentialTransport(Protocol):
    async def lock(
        self, model: str, endpoint: str, max_num_tokens: int, timeout: float | None, exclude: Sequence[str] = ()
    ) -> LockGrant: ...

    async def unary(
        self, endpoint: str, request: envelope.ConfidentialRequest, timeout: float | None
    ) -> envelope.ConfidentialResponse: ...

    def stream(
        self, endpoint: str, request: envelope.ConfidentialRequest, timeout: float | None
    ) -> AsyncIterator[envelope.ConfidentialResponse]: ...

    async def aclose(self) -> None: ...


# ---- transports ---------------------------------------------------------------------------------


class RestTransport:
    """The facade's REST routes (JSON with base64 fields)."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=None)
        self._headers = {AUTHORIZATION: f"Bearer {api_key}"}

    @staticmethod
    def _error(response: httpx.Response) -> ConfidentialError:
        try:
            error = orjson.loads(response.content)["error"]
            return ConfidentialError(str(error.get("code") or "HTTP_ERROR").upper(), str(error.get("message")))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return ConfidentialError("HTTP_ERROR", f"HTTP {response.status_code}")

    async def _post(self, path: str, body: dict[str, Any], timeout: float | None) -> Any:
        try:
            response = await self._http.post(path, json=body, headers=self._headers, timeout=timeout)
        except httpx.TimeoutException:
            raise ConfidentialError("DEADLINE_EXCEEDED", "the proxy did not answer in time") from None
        except httpx.HTTPError as error:
            raise ConfidentialError("UNAVAILABLE", f"the proxy is unreachable: {error}") from None
        if response.status_code != 200:
            raise self._error(response)
        return orjson.loads(response.content)

    async def lock(
        self, model: str, endpoint: str, max_num_tokens: int, timeout: float | None, exclude: Sequence[str] = ()
    ) -> LockGrant:
        body = {
            "model": model,
            "endpoint": endpoint,
            "max_num_tokens": max_num_tokens,
            "exclude_node_ids": list(exclude),
        }
        grant = await self._post("/v1/nodes/lock", body, timeout)
        return LockGrant(
            public_key=envelope.unb64(grant, "public_key", 32),
            node_id=grant["node_id"],
            stack_small_id=int(grant["stack_small_id"]),
            node_signing_key=envelope.unb64(grant, "node_signing_key", 32),
            expires_at=float(grant["expires_at"]),
            max_num_tokens=int(grant["max_num_tokens"]),
        )

    async def unary(
        self, endpoint: str, request: envelope.ConfidentialRequest, timeout: float | None
    ) -> envelope.ConfidentialResponse:
        return envelope.ConfidentialResponse.from_json(
            await self._post(f"/v1/confidential/{endpoint}", request.to_json(), timeout)
        )

    async def stream(
        self, endpoint: str, request: envelope.ConfidentialRequest, timeout: float | None
    ) -> AsyncIterator[envelope.ConfidentialResponse]:
        try:
            async with self._http.stream(
                "POST", f"/v1/confidential/{endpoint}", json=request.to_json(), headers=self._headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event = orjson.loads(data)
                    if "error" in event:
                        error = event["error"]
                        raise ConfidentialError(str(error.get("code") or "STREAM_ERROR").upper(), str(error["message"]))
                    yield envelope.ConfidentialResponse.from_json(event, chunk=True)
        except httpx.TimeoutException:
            raise ConfidentialError("DEADLINE_EXCEEDED", "the proxy did not answer in time") from None
        except httpx.HTTPError as error:
            raise ConfidentialError("UNAVAILABLE", f"the proxy stream broke: {error}") from None

    async def aclose(self) -> None:
        await self._http.aclose()


class GrpcTransport:
    """The core's RoutingService, through RoutingClient's confidential RPC wrappers."""

    def __init__(self, client: Any) -> None:
        self._client = client  # a RoutingClient

    @staticmethod
    def _error(error: Exception) -> ConfidentialError:
        return ConfidentialError(getattr(error, "reason", None) or type(error).__name__, str(error))

    async def lock(
        self, model: str, endpoint: str, max_num_tokens: int, timeout: float | None, exclude: Sequence[str] = ()
    ) -> LockGrant:
        from atoma_proxy.clients._errors import RoutingError
        from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb

        endpoints = {
            "chat/completions": cpb.CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS,
            "completions": cpb.CONFIDENTIAL_ENDPOINT_COMPLETIONS,
            "embeddings": cpb.CONFIDENTIAL_ENDPOINT_EMBEDDINGS,
            "images/generations": cpb.CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS,
        }
        try:
            grant = await self._client.lock_node(
                model=model,
                max_num_tokens=max_num_tokens,
                endpoint=endpoints[endpoint],
                exclude_node_ids=exclude,
                timeout=_grpc(timeout),
            )
        except RoutingError as error:
            raise self._error(error) from None
        return LockGrant(
            grant.public_key,
            grant.node_id,
            grant.stack_small_id,
            grant.node_signing_key,
            grant.expires_at,
            grant.max_num_tokens,
        )

    async def unary(
        self, endpoint: str, request: envelope.ConfidentialRequest, timeout: float | None
    ) -> envelope.ConfidentialResponse:
        from atoma_proxy.clients._errors import RoutingError

        message = wire.envelope_to_proto(request)
        try:
            if endpoint == "embeddings":
                answer = (await self._client.confidential_embeddings(envelope=message, timeout=_grpc(timeout))).answer
            elif endpoint == "images/generations":
                response = await self._client.confidential_generate_images(envelope=message, timeout=_grpc(timeout))
                answer = response.answer
            else:
                answer = None
                async for event in self._events(endpoint, message, timeout):
                    if event.WhichOneof("event") == "answer":
                        answer = event.answer
                if answer is None:
                    raise ConfidentialError("ANSWER_INVALID", "the proxy sent no answer")
        except RoutingError as error:
            raise self._error(error) from None
        return wire.sealed_from_proto(answer, chunk=False)

    def _events(self, endpoint: str, message: Any, timeout: float | None) -> AsyncIterator[Any]:
        if endpoint == "chat/completions":
            return self._client.confidential_chat_completion(envelope=message, timeout=_grpc(timeout))  # type: ignore[no-any-return]
        return self._client.confidential_completion(envelope=message, timeout=_grpc(timeout))  # type: ignore[no-any-return]

    async def stream(
        self, endpoint: str, request: envelope.ConfidentialRequest, timeout: float | None
    ) -> AsyncIterator[envelope.ConfidentialResponse]:
        from atoma_proxy.clients._errors import RoutingError

        try:
            async for event in self._events(endpoint, wire.envelope_to_proto(request), timeout):
                if event.WhichOneof("event") == "chunk":
                    yield wire.sealed_from_proto(event.chunk, chunk=True)
        except RoutingError as error:
            raise self._error(error) from None

    async def aclose(self) -> None:
        await self._client.close()


def _grpc(timeout: float | None) -> float:
    return math.inf if timeout is None else max(timeout, 0.001)


# ---- the client ---------------------------------------------------------------------------------


def _default_units(endpoint: str, body: dict[str, Any], plaintext: bytes) -> int:
    """Tokens to lock when the caller names none: the output cap plus the body's bytes (no tokenizer
    yields more tokens than bytes); images: their number."""
    if endpoint == "images/generations":
        n = body.get("n", 1)
        return n if isinstance(n, int) and n > 0 else 1
    if endpoint == "embeddings":
        return len(plaintext)
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or 1024
    n = body.get("n", 1)
    return int(cap) * (n if isinstance(n, int) and n > 0 else 1) + len(plaintext)


class AsyncConfidentialClient:
    def __init__(
        self, transport: ConfidentialTransport, *, default_timeout: float | None = 600, max_attempts: int = 3
    ) -> None:
        self._transport = transport
        self.default_timeout = default_timeout
        self.max_attempts = max_attempts

    @classmethod
    def rest(cls, base_url: str, *, api_key: str, **options: Any) -> AsyncConfidentialClient:
        """Over the REST facade at `base_url` (e.g. http://127.0.0.1:8080)."""
        return cls(RestTransport(base_url, api_key), **options)

    @classmethod
    async def grpc(cls, target: str, *, api_key: str, **options: Any) -> AsyncConfidentialClient:
        """Over the core's gRPC RoutingService at `target` (host:port)."""
        from atoma_proxy.clients._client import RoutingClient

        return cls(GrpcTransport(await RoutingClient.connect(target, api_key=api_key, default_timeout=None)), **options)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # the plain client's calls
    async def chat_completion_create(self, *, model: str, messages: list[Any], **fields: Any) -> ConfidentialResult:
        return await self._unary("chat/completions", {"model": model, "messages": messages, **fields})

    def chat_completion(self, *, model: str, messages: list[Any], **fields: Any) -> AsyncIterator[Any]:
        """The decrypted chunks of a streamed chat completion (OpenAI chunk JSON, usage chunk included)."""
        return self._stream("chat/completions", {"model": model, "messages": messages, **fields})

    async def completion_create(self, *, model: str, prompt: Any, **fields: Any) -> ConfidentialResult:
        return await self._unary("completions", {"model": model, "prompt": prompt, **fields})

    def completion(self, *, model: str, prompt: Any, **fields: Any) -> AsyncIterator[Any]:
        return self._stream("completions", {"model": model, "prompt": prompt, **fields})

    async def embeddings(self, *, model: str, input: Any, **fields: Any) -> ConfidentialResult:
        return await self._unary("embeddings", {"model": model, "input": input, **fields})

    async def generate_images(self, *, model: str, prompt: str, **fields: Any) -> ConfidentialResult:
        return await self._unary("images/generations", {"model": model, "prompt": prompt, **fields})

    # the machinery
    def _options(self, body: dict[str, Any]) -> tuple[float | None, int | None]:
        timeout = body.pop("timeout", None)
        units = body.pop("max_num_tokens", None)
        timeout = self.default_timeout if timeout is None else timeout
        return (None if timeout is None or timeout == math.inf else time.monotonic() + timeout), units

    async def _seal(
        self,
        endpoint: str,
        body: dict[str, Any],
        units: int | None,
        deadline: float | None,
        avoid: list[str],
        *,
        stream: bool,
    ) -> tuple[envelope.ClientSession, LockGrant]:
        """A fresh lock (avoiding the nodes that failed this call) and a fresh encryption to its key."""
        plaintext = orjson.dumps({**body, "stream": stream})
        units = units or _default_units(endpoint, body, plaintext)
        grant = await self._transport.lock(body["model"], endpoint, units, _remaining(deadline), avoid)
        session = envelope.seal_request(
            plaintext,
            grant.public_key,
            stack_small_id=grant.stack_small_id,
            model_name=body["model"],
            stream=stream,
            num_compute_units=units,
            node_signing_key=grant.node_signing_key,
        )
        return session, grant

    async def _unary(self, endpoint: str, body: dict[str, Any]) -> ConfidentialResult:
        body = dict(body)
        body.pop("stream", None)
        deadline, units = self._options(body)
        attempt, grant = 0, None
        avoid: list[str] = []
        while True:
            attempt += 1
            try:
                session, grant = await self._seal(endpoint, body, units, deadline, avoid, stream=False)
                answer = await self._transport.unary(endpoint, session.request, _remaining(deadline))
                try:
                    plaintext = session.open_response(answer)
                except (crypto.DecryptionFailed, envelope.HashMismatch, signing.SignatureInvalid) as error:
                    raise ConfidentialError("ANSWER_INVALID", str(error)) from None
                return ConfidentialResult(orjson.loads(plaintext), answer.usage, grant.node_id, attempt)
            except ConfidentialError as error:
                if not self._retry(error, attempt, deadline):
                    raise
                if grant is not None and error.reason in NODE_AT_FAULT:
                    avoid.append(grant.node_id)

    async def _stream(self, endpoint: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        body = dict(body)
        body.pop("stream", None)
        deadline, units = self._options(body)
        attempt, grant = 0, None
        avoid: list[str] = []
        while True:
            attempt += 1
            delivered = False
            try:
                session, grant = await self._seal(endpoint, body, units, deadline, avoid, stream=True)
                opener = session.stream_opener()
                async for chunk in self._transport.stream(endpoint, session.request, _remaining(deadline)):
                    try:
                        plaintext = opener.open_chunk(chunk)
                    except envelope.StreamOutOfOrder as error:
                        raise ConfidentialError("STREAM_OUT_OF_ORDER", str(error)) from None
                    except (crypto.DecryptionFailed, envelope.HashMismatch, signing.SignatureInvalid) as error:
                        raise ConfidentialError("ANSWER_INVALID", str(error)) from None
                    if plaintext is not None:
                        delivered = True
                        yield orjson.loads(plaintext)
                try:
                    opener.finish()
                except envelope.StreamTruncated as error:
                    raise ConfidentialError("STREAM_TRUNCATED", str(error)) from None
                return
            except ConfidentialError as error:
                if delivered or not self._retry(error, attempt, deadline):
                    raise
                if grant is not None and error.reason in NODE_AT_FAULT:
                    avoid.append(grant.node_id)

    def _retry(self, error: ConfidentialError, attempt: int, deadline: float | None) -> bool:
        remaining = _remaining(deadline)
        return error.retryable and attempt < self.max_attempts and (remaining is None or remaining > 0)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class ConfidentialClient:
    """The blocking twin of AsyncConfidentialClient: same calls, run on a private event loop thread."""

    def __init__(self, factory: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="confidential-client", daemon=True)
        self._thread.start()
        self._client: AsyncConfidentialClient = self._run(factory())

    @classmethod
    def rest(cls, base_url: str, *, api_key: str, **options: Any) -> ConfidentialClient:
        async def make() -> AsyncConfidentialClient:
            return AsyncConfidentialClient.rest(base_url, api_key=api_key, **options)

        return cls(make)

    @classmethod
    def grpc(cls, target: str, *, api_key: str, **options: Any) -> ConfidentialClient:
        return cls(lambda: AsyncConfidentialClient.grpc(target, api_key=api_key, **options))

    def _run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    def _iterate(self, stream: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                self._run(aclose())

    def chat_completion_create(self, **fields: Any) -> ConfidentialResult:
        return self._run(self._client.chat_completion_create(**fields))

    def chat_completion(self, **fields: Any) -> Iterator[Any]:
        return self._iterate(self._client.chat_completion(**fields))

    def completion_create(self, **fields: Any) -> ConfidentialResult:
        return self._run(self._client.completion_create(**fields))

    def completion(self, **fields: Any) -> Iterator[Any]:
        return self._iterate(self._client.completion(**fields))

    def embeddings(self, **fields: Any) -> ConfidentialResult:
        return self._run(self._client.embeddings(**fields))

    def generate_images(self, **fields: Any) -> ConfidentialResult:
        return self._run(self._client.generate_images(**fields))

    def close(self) -> None:
        try:
            self._run(self._client.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
