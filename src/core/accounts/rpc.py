"""The edge of the account servicers: domain errors end the RPC as google.rpc.Status with ErrorInfo."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from atoma_proxy.core.errors import DatabaseUnavailable, InternalError, ProxyError
from atoma_proxy.core.persistence.outage import is_database_outage
from atoma_proxy.core.status import to_grpc_status

__all__ = ["rpc"]

log = logging.getLogger(__name__)

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def rpc(handler: Handler[Servicer, Request, Response]) -> Handler[Servicer, Request, Response]:
    """Wrap a unary handler: a ProxyError aborts with its status, a database outage with DATABASE_UNAVAILABLE;
    anything else is logged and INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except ProxyError as error:
            await context.abort_with_status(to_grpc_status(error))
        except Exception as error:
            if is_database_outage(error):
                log.warning("%s: database unavailable: %s", handler.__qualname__, error)
                await context.abort_with_status(to_grpc_status(DatabaseUnavailable()))
            log.exception("%s failed", handler.__qualname__)
            await context.abort_with_status(
                to_grpc_status(InternalError("The proxy failed unexpectedly; the error was logged."))
            )

    return wrapper
