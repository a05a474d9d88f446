"""Response metadata that code around the servicer adds to an RPC.

The rate-limit interceptor runs before the servicer but cannot send initial metadata itself (only
one send is allowed, and the servicer does it with its routing facts), so it leaves its pairs here
and `InferenceCall.metadata()` appends them. grpc.aio runs each RPC's interceptors and handler in
one `contextvars.Context` of its own, so the pairs never leak to another RPC.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["extra_initial_metadata"]

extra_initial_metadata: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("extra_initial_metadata", default=())
