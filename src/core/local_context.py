"""The ServicerContext of an in-process call (local_channel.py): what a servicer sees, as over gRPC.

A servicer and the server interceptors read the invocation metadata and the time remaining,
send initial metadata once, set trailing metadata and abort with a status exactly as they do on a
grpc.aio server; the call object on the other side (local_channel.py) turns that into what a
grpc.aio client sees. The peer is loopback: the facade in the same process is the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

import grpc
from grpc.aio import AbortError, UsageError

__all__ = ["LOCAL_PEER", "LocalContext", "MetadataPairs"]

LOCAL_PEER = "ipv4:127.0.0.1:0"

MetadataPairs = tuple[tuple[str, str | bytes], ...]


class Metadatum(NamedTuple):
    """One metadata pair with `.key` and `.value`, as grpc.aio hands them to servicers and interceptors."""

    key: str
    value: str | bytes


class LocalContext(grpc.aio.ServicerContext):  # type: ignore[type-arg]
    """One in-process RPC as its servicer sees it; `initial_sent` wakes the caller's initial_metadata()."""

    def __init__(self, method: str, metadata: MetadataPairs, deadline: float | None) -> None:
        self.method = method
        self._metadata: MetadataPairs = tuple(Metadatum(key, value) for key, value in metadata)
        self.deadline = deadline  # time.monotonic() based, None without a deadline
        self.initial: MetadataPairs | None = None
        self.initial_sent = asyncio.Event()
        self.trailing: MetadataPairs = ()
        self.status_code: grpc.StatusCode | None = None
        self.status_details: str | None = None
        self.aborted = False

    # What servicers read.
    def invocation_metadata(self) -> MetadataPairs:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def peer(self) -> str:
        return LOCAL_PEER

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, Any]:
        return {}

    # What servicers send.
    async def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, str | bytes]]) -> None:
        if self.initial is not None:
            raise UsageError("Send initial metadata failed: already sent")
        self.initial = tuple(initial_metadata)
        self.initial_sent.set()

    def mark_initial_sent(self) -> None:
        """A response message implies the initial metadata (empty unless sent before)."""
        if self.initial is None:
            self.initial = ()
            self.initial_sent.set()

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> MetadataPairs:
        return self.trailing

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> NoReturn:
        if self.aborted:
            raise UsageError("Abort already called!")
        self.aborted = True
        self.status_code, self.status_details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise AbortError()

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.status_code = code

    def set_details(self, details: str) -> None:
        self.status_details = details

    def code(self) -> grpc.StatusCode | None:
        return self.status_code

    def details(self) -> str | None:
        return self.status_details

    def set_compression(self, compression: grpc.Compression) -> None:
        pass  # nothing is compressed in a process

    def disable_next_message_compression(self) -> None:
        pass

    async def read(self) -> NoReturn:
        raise UsageError("read() is for client-streaming RPCs, which the in-process channel does not carry")

    async def write(self, message: Any) -> NoReturn:
        raise UsageError("a servicer of the in-process channel yields its responses")

    def add_done_callback(self, callback: Any) -> None:
        raise UsageError("add_done_callback is not supported in-process")

    def cancelled(self) -> bool:
        return self.status_code is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return self.status_code is not None
