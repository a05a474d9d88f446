"""Server-sent events from a node: the `data:` payloads, as bytes, without decoding them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "EventTooLarge", "iter_sse_batches"]

_DATA = b"data:"
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024


class EventTooLarge(ValueError):
    """An event grew past the limit without ending (a node that never writes its blank line)."""


async def iter_sse_batches(
    chunks: AsyncIterable[bytes], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> AsyncIterator[list[bytes]]:
    """Yield, per piece of the byte stream, the data of the events it completed (never an empty list).

    Events that arrive together stay together: the relay forwards them as one message, so a node
    that writes faster than the proxy relays costs one hop per network read, not one per token.
    Events end at a blank line ("\\n\\n", "\\r\\n\\r\\n" or "\\r\\r"); multi-line data is joined
    with "\\n" as the SSE specification says; comments and other fields are skipped.

    Linear in the stream's length: each byte is normalized once and searched at most twice (a
    piece is searched from just before where the previous search stopped), and an event longer
    than `max_event_bytes` raises EventTooLarge as soon as that many bytes of it arrived.
    """
    pending = bytearray()  # the start of an event that has not ended yet
    searched = 0  # bytes of `pending` known to hold no blank line
    after_cr = False  # the previous piece ended with "\r": a "\n" opening this one belongs to it
    async for chunk in chunks:
        if after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        after_cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if pending:
            pending += chunk
            buffer: bytes | bytearray = pending
        else:
            buffer = chunk
        batch: list[bytes] = []
        start = 0
        end = buffer.find(b"\n\n", max(searched - 1, 0))
        while end >= 0:
            if end - start > max_event_bytes:
                raise EventTooLarge(f"an event of more than {max_event_bytes} bytes")
            data = _event_data(bytes(buffer[start:end]))
            if data is not None:
                batch.append(data)
            start = end + 2
            end = buffer.find(b"\n\n", start)
        if buffer is pending:
            del pending[:start]
        elif start < len(buffer):
            pending += memoryview(buffer)[start:]
        searched = len(pending)
        if batch:
            yield batch
        if searched > max_event_bytes:  # after the events that came before it
            raise EventTooLarge(f"an event of more than {max_event_bytes} bytes")
    if pending.strip():
        data = _event_data(bytes(pending))
        if data is not None:
            yield [data]


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(_DATA) and b"\n" not in event:  # the common case: one data line
        return event[6:] if event[5:6] == b" " else event[5:]
    lines = [line[6:] if line[5:6] == b" " else line[5:] for line in event.split(b"\n") if line.startswith(_DATA)]
    return b"\n".join(lines) if lines else None
