"""argon2id password hashing: salted, verifiable, upgradable."""

from __future__ import annotations

import argon2

from atoma_proxy.core.accounts.passwords import PasswordHasher
from tests.core.accounts.conftest import cheap_hasher


async def test_default_hash_is_argon2id_with_the_rfc_9106_profile() -> None:
    stored = await PasswordHasher().hash("correct horse battery")

    parameters = argon2.extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$")
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (65536, 3, 4)


async def test_hashes_are_salted_and_verify() -> None:
    hasher = cheap_hasher()

    first, second = await hasher.hash("s3cret-pass"), await hasher.hash("s3cret-pass")

    assert first != second
    assert "s3cret-pass" not in first
    assert await hasher.verify(first, "s3cret-pass") and await hasher.verify(second, "s3cret-pass")
    assert not await hasher.verify(first, "s3cret-pasS")
    assert not await hasher.verify(first, "")


async def test_a_malformed_stored_hash_is_a_failed_check_not_an_error() -> None:
    hasher = cheap_hasher()

    assert not await hasher.verify("not-a-hash", "anything")
    assert not await hasher.verify("$argon2id$v=19$m=8,t=1,p=1$bad$bad", "anything")
    assert hasher.needs_rehash("not-a-hash")


async def test_rehash_is_needed_exactly_when_the_parameters_changed() -> None:
    old = cheap_hasher()
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    stored = await old.hash("s3cret-pass")

    assert not old.needs_rehash(stored)
    assert stronger.needs_rehash(stored)
    assert await stronger.verify(stored, "s3cret-pass")  # old hashes keep working until upgraded
    assert not stronger.needs_rehash(await stronger.hash("s3cret-pass"))


async def test_verify_nothing_spends_the_work_and_reveals_nothing() -> None:
    hasher = cheap_hasher()

    assert await hasher.verify_nothing("whatever") is None
