"""RoutingClient's wrappers of the confidential RPCs: protobuf in, protobuf out, errors typed.

They are the transport of `ConfidentialClient` over gRPC (which encrypts, locks and retries); call
them directly only to build another client. Keyword-only `timeout` and `metadata` as every call.
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline sent to the core.
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from atoma_proxy.clients._errors import from_rpc_error
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb


class ConfidentialRpcs:
    """Mixed into RoutingClient, which provides `_stub`, `_unary` and `_call_options`."""

    _stub: Any

    async def _unary(  # provided by RoutingClient
        self, method: Any, request: Any, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> tuple[Any, dict[str, str]]:
        raise NotImplementedError

    def _call_options(self, timeout: float | None, metadata: Mapping[str, str] | None) -> dict[str, Any]:
        raise NotImplementedError

    async def lock_node(
        self,
        *,
        model: str,
        max_num_tokens: int | None = None,
        lock_timeout: float | None = None,
        endpoint: int | None = None,
        exclude_node_ids: Sequence[str] = (),
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> cpb.LockNodeResponse:
        """LockNode: a node with a valid key for one request (`lock_timeout`: seconds the lock lives)."""
        request = cpb.LockNodeRequest(model=model, exclude_node_ids=list(exclude_node_ids))
        if max_num_tokens is not None:
            request.max_num_tokens = max_num_tokens
        if lock_timeout is not None:
            request.timeout = lock_timeout
        if endpoint is not None:
            request.endpoint = endpoint  # type: ignore[assignment]
        response, _ = await self._unary(self._stub.LockNode, request, timeout, metadata)
        return response  # type: ignore[no-any-return]

    def confidential_chat_completion(
        self,
        *,
        envelope: cpb.ConfidentialEnvelope,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncIterator[cpb.ConfidentialChatCompletionResponse]:
        request = cpb.ConfidentialChatCompletionRequest(envelope=envelope)
        return self._raw_stream(self._stub.ConfidentialChatCompletion, request, timeout, metadata)

    def confidential_completion(
        self,
        *,
        envelope: cpb.ConfidentialEnvelope,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncIterator[cpb.ConfidentialCompletionResponse]:
        request = cpb.ConfidentialCompletionRequest(envelope=envelope)
        return self._raw_stream(self._stub.ConfidentialCompletion, request, timeout, metadata)

    async def confidential_embeddings(
        self,
        *,
        envelope: cpb.ConfidentialEnvelope,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> cpb.ConfidentialEmbeddingsResponse:
        request = cpb.ConfidentialEmbeddingsRequest(envelope=envelope)
        response, _ = await self._unary(self._stub.ConfidentialEmbeddings, request, timeout, metadata)
        return response  # type: ignore[no-any-return]

    async def confidential_generate_images(
        self,
        *,
        envelope: cpb.ConfidentialEnvelope,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> cpb.ConfidentialGenerateImagesResponse:
        request = cpb.ConfidentialGenerateImagesRequest(envelope=envelope)
        response, _ = await self._unary(self._stub.ConfidentialGenerateImages, request, timeout, metadata)
        return response  # type: ignore[no-any-return]

    async def register_node_key(
        self,
        *,
        node_id: str,
        rotation_counter: int,
        rotation_nonce: int,
        public_key: bytes,
        evidence: bytes,
        signature: bytes,
        signing_key: bytes = b"",
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> cpb.RegisterNodeKeyResponse:
        """RegisterNodeKey, as a node's sidecar sends it (authenticated by `signature`, not the API key)."""
        request = cpb.RegisterNodeKeyRequest(
            node_id=node_id,
            rotation_counter=rotation_counter,
            rotation_nonce=rotation_nonce,
            public_key=public_key,
            evidence=evidence,
            signature=signature,
            signing_key=signing_key,
        )
        response, _ = await self._unary(self._stub.RegisterNodeKey, request, timeout, metadata)
        return response  # type: ignore[no-any-return]

    async def get_node_attestation(
        self, *, node_id: str, timeout: float | None = None, metadata: Mapping[str, str] | None = None
    ) -> cpb.GetNodeAttestationResponse:
        """A node's current key and its attestation evidence."""
        request = cpb.GetNodeAttestationRequest(node_id=node_id)
        response, _ = await self._unary(self._stub.GetNodeAttestation, request, timeout, metadata)
        return response  # type: ignore[no-any-return]

    async def _raw_stream(
        self, method: Any, request: Any, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> AsyncIterator[Any]:
        call = method(request, **self._call_options(timeout, metadata))
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
        finally:
            call.cancel()
