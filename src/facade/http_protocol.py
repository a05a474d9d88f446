"""uvicorn's httptools protocol with read deadlines and errors in OpenAI's envelope.

uvicorn times out only idle keep-alive connections: a client that opens a connection and sends its
headers, or its body, one byte at a time holds the connection (and an ASGI task) forever, and a few
thousand such clients exhaust the facade. This protocol adds two deadlines (README "Limits"):

* `facade.header_timeout`: from the connection's opening, or the first byte of a request on a
  kept-alive connection, to the end of the request's headers;
* `facade.body_timeout`: from the end of the headers to the end of the body.

Past either the client gets 408 in OpenAI's envelope (when no response has started) and the
connection is closed, lingering (as nginx's `lingering_close`): our side is shut for writing at
once, and what the client still sends is read and dropped for up to `_LINGER` seconds, so that
closing on unread bytes does not reset the connection before the client read the 408. A handler
waiting for the body sees the client gone. A request that cannot be parsed at all (a malformed
header line, a bad chunk size) gets uvicorn's 400 as the envelope too, `code: invalid_request`,
instead of uvicorn's plain text.

Each request's scope carries a `DisconnectSignal` (disconnect.py) that the protocol fires when the
connection is lost (or closed as too slow) before the response is complete: an inference call waiting
for the core is cancelled from here, without a watcher task per request.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from atoma_proxy.config import FacadeSettings
from atoma_proxy.facade.disconnect import DISCONNECT_EXTENSION, DisconnectSignal, disconnect_signal

__all__ = ["FacadeHttpProtocol", "facade_protocol"]


def _error_response(status: int, message: str, code: str) -> bytes:
    kind = "invalid_request_error"
    body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


_LINGER = 2.0  # seconds a closed connection keeps draining what a slow client still sends

_HEADERS_TOO_SLOW = _error_response(408, "The request headers were not received in time.", "request_timeout")
_BODY_TOO_SLOW = _error_response(408, "The request body was not received in time.", "request_timeout")


class FacadeHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header and body read deadlines, and a JSON 400."""

    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._lingering = False

    def _arm(self, seconds: float, answer: bytes) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(seconds, self._too_slow, answer)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self, answer: bytes) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(answer)
        self.logger.info("closing a connection whose client is too slow to send its request")
        self._close_lingering()
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the handler waiting for the body sees the client gone
            cycle.message_event.set()
            self._fire_disconnect(cycle.scope)

    @staticmethod
    def _fire_disconnect(scope: Any) -> None:
        signal = disconnect_signal(scope)
        if signal is not None:
            signal.fire()

    def _close_lingering(self) -> None:
        """Half-close now (the answer, then FIN), drop what the client still sends, close after `_LINGER`."""
        self._lingering = True
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self.transport.close()
            return
        self.loop.call_later(_LINGER, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering:
            self.transport.close()
            return
        super().eof_received()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, _HEADERS_TOO_SLOW)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            self._fire_disconnect(cycle.scope)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {DISCONNECT_EXTENSION: DisconnectSignal()}  # type: ignore[typeddict-unknown-key]
        if self._read_deadline is None:  # a new request on a kept-alive connection
            self._arm(self.header_timeout, _HEADERS_TOO_SLOW)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout, _BODY_TOO_SLOW)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(_error_response(400, "Invalid HTTP request received.", "invalid_request"))
        self._close_lingering()


def facade_protocol(settings: FacadeSettings) -> type[FacadeHttpProtocol]:
    """The protocol class for uvicorn's `http=`, with the deadlines of `settings`."""
    return type(
        "FacadeHttpProtocol",
        (FacadeHttpProtocol,),
        {"header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout},
    )
