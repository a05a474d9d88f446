"""The disconnect watch on its own: the protocol's signal, and the ASGI-channel watcher used without it."""

from __future__ import annotations

import asyncio

from atoma_proxy.facade.disconnect import DISCONNECT_EXTENSION, DisconnectSignal, watch_disconnect


class Call:
    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> bool:
        self.cancels += 1
        return True


async def _never() -> dict[str, str]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_a_signal_fires_once_and_late_callbacks_run_at_once() -> None:
    signal, seen = DisconnectSignal(), []
    signal.add(lambda: seen.append("a"))
    kept = lambda: seen.append("removed")  # noqa: E731
    signal.add(kept)
    signal.discard(kept)
    signal.fire()
    signal.fire()
    signal.add(lambda: seen.append("late"))
    assert seen == ["a", "late"] and signal.fired


async def test_the_protocols_signal_cancels_the_call_only_while_the_block_runs() -> None:
    signal, call = DisconnectSignal(), Call()
    scope = {"type": "http", "extensions": {DISCONNECT_EXTENSION: signal}}
    async with watch_disconnect(scope, _never, call) as disconnected:  # type: ignore[arg-type]
        assert not disconnected.is_set()
        signal.fire()
        assert disconnected.is_set() and call.cancels == 1

    after, other = DisconnectSignal(), Call()
    async with watch_disconnect({"extensions": {DISCONNECT_EXTENSION: after}}, _never, other):  # type: ignore[arg-type]
        pass
    after.fire()  # the request's call has ended: nothing to cancel
    assert other.cancels == 0


async def test_without_the_signal_a_watcher_reads_the_channel_until_the_disconnect() -> None:
    messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def receive() -> dict[str, str]:
        return await messages.get()

    call = Call()
    async with watch_disconnect({"type": "http"}, receive, call) as disconnected:  # type: ignore[arg-type]
        await messages.put({"type": "http.request"})  # anything else is not a disconnect
        await messages.put({"type": "http.disconnect"})
        await asyncio.wait_for(disconnected.wait(), 10)
    assert call.cancels == 1
