"""Answering a waiter's future once: the batching writers (the ledger's group commit, Redis script batches)
answer each caller with its own result or error, and skip a caller that has gone away."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["resolve"]


def resolve(future: asyncio.Future[Any], result: Any = None, *, error: BaseException | None = None) -> None:
    """Set `error`, or else `result`, on `future` unless it is done already (answered, or its caller cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
