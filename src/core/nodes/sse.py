"""Server-sent events from a node: the `data:` payloads, as bytes, without decoding them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

_DATA = b"data:"


async def iter_sse_batches(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """Yield, per piece of the byte stream, the data of the events it completed (never an empty list).

    Events that arrive together stay together: the relay forwards them as one message, so a node
    that writes faster than the proxy relays costs one hop per network read, not one per token.
    Events end at a blank line ("\\n\\n", "\\r\\n\\r\\n" or "\\r\\r"); multi-line data is joined
    with "\\n" as the SSE specification says; comments and other fields are skipped.
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        batch: list[bytes] = []
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            data = _event_data(buffer[:end])
            buffer = buffer[end + 2 :]
            if data is not None:
                batch.append(data)
        if batch:
            yield batch
    if buffer.strip():
        data = _event_data(buffer)
        if data is not None:
            yield [data]


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(_DATA) and b"\n" not in event:  # the common case: one data line
        return event[6:] if event[5:6] == b" " else event[5:]
    lines = [line[6:] if line[5:6] == b" " else line[5:] for line in event.split(b"\n") if line.startswith(_DATA)]
    return b"\n".join(lines) if lines else None
