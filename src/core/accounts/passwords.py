"""Password hashing: argon2id through argon2-cffi, off the event loop, with bounded memory.

    hasher = PasswordHasher()
    stored = await hasher.hash("correct horse")
    if await hasher.verify(stored, attempt):            # False for a wrong password, never raises for it
        if hasher.needs_rehash(stored):                  # parameters changed since `stored` was made
            stored = await hasher.hash(attempt)

argon2id with RFC 9106's second recommended profile (t=3, m=64 MiB, p=4) by default: memory-hard, salted
(16 random bytes per hash), parameters kept in the encoded hash so that they can be raised later and old
hashes upgraded at the next login. Each hash takes tens of milliseconds of CPU and 64 MiB: it runs in a
worker thread (argon2-cffi releases the GIL) and at most `max_concurrent` run at once, so a burst of
logins cannot stall the event loop or exhaust memory. At most `max_waiting` more wait for a slot:
past that a hash is refused at once with RATE_LIMITED (retry in a second) rather than queued behind
a flood for tens of seconds: an honest login waits behind at most `max_waiting` others, or is told
to retry. `verify_nothing` spends the same work when there is no stored hash to check against, so
that "no such user" answers as slowly as "wrong password".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from atoma_proxy.core.errors import RateLimited

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "PasswordHasher"]

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 8
# A bound on the work one request can cause (argon2 hashes any length, but the input is read whole).
MAX_PASSWORD_LENGTH = 1024


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_cost: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        max_concurrent: int = 4,
        max_waiting: int = 16,
    ) -> None:
        """argon2id with these parameters (memory_cost in KiB); the defaults are argon2-cffi's (RFC 9106)."""
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=argon2.Type.ID
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self._capacity = max_concurrent + max_waiting
        self._pending = 0  # hashing or waiting to
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) of `password`."""
        return await self._run(self._argon2.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether `password` matches `stored_hash`; a malformed stored hash also answers False."""
        return await self._run(self._verify, stored_hash, password)

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        """`work(*args)` in a worker thread once a slot is free; RateLimited if too many wait already."""
        if self._pending >= self._capacity:
            raise RateLimited("The proxy is busy checking passwords; please retry in a second.", retry_after=1.0)
        self._pending += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(work, *args)
        finally:
            self._pending -= 1

    async def verify_nothing(self, password: str) -> None:
        """Do the work of a `verify` that fails: for logins of unknown users, so timing does not tell them apart."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not a password of anyone")
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether `stored_hash` was made with other parameters (or another variant) than this hasher's."""
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
