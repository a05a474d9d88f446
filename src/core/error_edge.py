"""The one error edge of the core: what a servicer raises becomes the status its RPC ends with, on every service.

Servicers raise, they never abort: this grpc.aio server interceptor wraps every unary-request handler
(unary-unary and unary-stream) and turns what escapes it into a google.rpc.Status (status.py):

    ProxyError                  its own code, ErrorInfo reason, message and details
    a database outage           DATABASE_UNAVAILABLE (UNAVAILABLE, RetryInfo); logged as a warning
    any other exception         INTERNAL "The proxy failed unexpectedly; the error was logged."; logged
    grpc.aio.AbortError         passes through: the servicer (or an interceptor inside) already ended the RPC
    asyncio.CancelledError      passes through: the caller is gone, or the server is stopping

The trailing metadata the servicer had already set (`context.set_trailing_metadata`, e.g. the routing facts
of an inference request) stays in the trailers, after the status; an error's own `headers` follow it.
The wrapping itself (caching per method, streams, health's context.write handler) is unary_interceptor.py's.

The edge is the innermost interceptor (server.py): an interceptor around it finds the RPC's final code in
`context.code()` when its `finally` runs.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from atoma_proxy.core.errors import DatabaseUnavailable, InternalError, ProxyError
from atoma_proxy.core.persistence.outage import is_database_outage
from atoma_proxy.core.status import to_grpc_status
from atoma_proxy.core.unary_interceptor import UnaryInterceptor

__all__ = ["UNEXPECTED_MESSAGE", "ErrorEdgeInterceptor", "as_proxy_error", "fail"]

log = logging.getLogger(__name__)

UNEXPECTED_MESSAGE = "The proxy failed unexpectedly; the error was logged."


def as_proxy_error(error: Exception, method: str) -> ProxyError:
    """The domain error `error` ends the RPC `method` with: itself when it is one, else DatabaseUnavailable for
    a database outage, else InternalError; the last two are logged (a bug with its traceback)."""
    if isinstance(error, ProxyError):
        return error
    if is_database_outage(error):
        log.warning("%s: database unavailable: %s", method, error)
        return DatabaseUnavailable()
    log.error("%s failed unexpectedly", method, exc_info=error)
    return InternalError(UNEXPECTED_MESSAGE)


async def fail(context: grpc.aio.ServicerContext, error: Exception, method: str) -> NoReturn:
    """End the RPC with the status of `error` (see `as_proxy_error`), keeping the trailing metadata already set."""
    proxy_error = as_proxy_error(error, method)
    trailing = (*(context.trailing_metadata() or ()), *proxy_error.headers)
    await context.abort_with_status(to_grpc_status(proxy_error, trailing))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


class ErrorEdgeInterceptor(UnaryInterceptor):
    """Ends every RPC whose servicer raised with the status of what it raised (module docstring)."""

    async def failed(self, error: Exception, context: grpc.aio.ServicerContext, method: str) -> NoReturn:
        await fail(context, error, method)
