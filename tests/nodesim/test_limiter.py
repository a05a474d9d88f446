"""FIFO admission: order, live limit changes, cancelled waiters."""

from __future__ import annotations

import asyncio

from atoma_proxy.nodesim.limiter import FifoLimiter


async def test_waiters_are_admitted_in_arrival_order() -> None:
    limiter = FifoLimiter(1)
    await limiter.acquire()
    order: list[int] = []

    async def worker(number: int) -> None:
        await limiter.acquire()
        order.append(number)
        limiter.release()

    tasks = [asyncio.create_task(worker(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert (limiter.running, limiter.waiting) == (1, 5)
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert (limiter.running, limiter.waiting) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue_without_a_slot() -> None:
    limiter = FifoLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert (limiter.running, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.try_acquire()


async def test_waiter_cancelled_after_being_granted_passes_the_slot_on() -> None:
    limiter = FifoLimiter(1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # grants `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
    assert (limiter.running, limiter.waiting) == (1, 0)


async def test_raising_the_limit_admits_waiters_and_zero_means_unlimited() -> None:
    limiter = FifoLimiter(1)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    limiter.set_limit(3)
    await asyncio.sleep(0)
    assert (limiter.running, limiter.waiting) == (3, 1)
    limiter.set_limit(0)
    await asyncio.gather(*waiters)
    assert (limiter.running, limiter.waiting) == (4, 0)
