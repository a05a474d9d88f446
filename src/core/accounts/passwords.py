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
logins cannot stall the event loop or exhaust memory. `verify_nothing` spends the same work when there
is no stored hash to check against, so that "no such user" answers as slowly as "wrong password".
"""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "PasswordHasher"]

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
    ) -> None:
        """argon2id with these parameters (memory_cost in KiB); the defaults are argon2-cffi's (RFC 9106)."""
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=argon2.Type.ID
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) of `password`."""
        async with self._slots:
            return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether `password` matches `stored_hash`; a malformed stored hash also answers False."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, password)

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
