"""API keys and their owners.

A key is `sk-atoma-` followed by 40 random characters of [A-Za-z0-9] (about 238 bits). The database keeps
only its SHA-256 (hex) and its first 16 characters, the *prefix*, which is shown to users to tell their
keys apart and which finds the row through a unique index. The plaintext exists once, in the return value
of `ApiKeyRepository.create`. (Plain SHA-256 is enough for random keys of this length: there is nothing
to guess. A password hash would only slow down every request.)

Repositories flush and never commit: the caller's unit of work does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.emails import canonical_email
from atoma_proxy.core.persistence.dialects import insert_or_ignore
from atoma_proxy.core.persistence.models import ApiKey, User, utcnow

__all__ = [
    "API_KEY_LENGTH",
    "API_KEY_PREFIX",
    "KEY_PREFIX_LENGTH",
    "ApiKeyRepository",
    "UserRepository",
    "generate_api_key",
    "hash_api_key",
    "is_well_formed_api_key",
    "key_prefix",
]

API_KEY_PREFIX = "sk-atoma-"
_SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits
API_KEY_LENGTH = len(API_KEY_PREFIX) + _SECRET_LENGTH
KEY_PREFIX_LENGTH = 16
_KEY_PATTERN = re.compile(rf"{re.escape(API_KEY_PREFIX)}[A-Za-z0-9]{{{_SECRET_LENGTH}}}")

# Attempts at a key whose prefix is not taken yet (62**7 prefixes: a second attempt is already rare).
_CREATE_ATTEMPTS = 5


def generate_api_key() -> str:
    """A new random key: `sk-atoma-` + 40 characters of [A-Za-z0-9] from `secrets`."""
    return API_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))


def hash_api_key(key: str) -> str:
    """SHA-256 of the whole key, 64 lower-case hex characters: what the database stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The key's first 16 characters: shown to users and used to look the key up."""
    return key[:KEY_PREFIX_LENGTH]


def is_well_formed_api_key(key: str) -> bool:
    """Whether `key` has the shape of a key this proxy issues (says nothing about it existing)."""
    return _KEY_PATTERN.fullmatch(key) is not None


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email, in its canonical form (`canonical_email`)."""
        email = canonical_email(email)
        return (await self.session.execute(select(User).where(User.email == email))).scalar_one_or_none()

    async def get_or_create_by_email(self, email: str) -> User:
        """The user with this email (in its canonical form, `canonical_email`), created if there is none.

        Safe against concurrent callers: the insert is `INSERT ... ON CONFLICT (email) DO NOTHING`, so a
        racing transaction that inserted the same email first makes ours wait for it and then do
        nothing, and the SELECT that follows (READ COMMITTED) sees its row.
        """
        email = canonical_email(email)
        user = await self.get_by_email(email)
        if user is not None:
            return user
        await self.session.execute(
            insert_or_ignore(self.session, User, {"email": email, "created_at": utcnow()}, key=["email"])
        )
        user = await self.get_by_email(email)
        if user is None:  # pragma: no cover - the row exists: inserted by us or by whoever conflicted
            raise RuntimeError(f"user {email!r} vanished while being created")
        return user


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, user_id: int, name: str) -> tuple[str, ApiKey]:
        """Issue a key to `user_id`. Returns the plaintext (never retrievable again) and the stored row."""
        for _ in range(_CREATE_ATTEMPTS):
            key = generate_api_key()
            prefix = key_prefix(key)
            taken = await self.session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
            if taken is None:
                break
        else:  # pragma: no cover - would take five collisions in a row among 62**7 prefixes
            raise RuntimeError("could not find a free API key prefix")
        api_key = ApiKey(user_id=user_id, name=name, prefix=prefix, key_hash=hash_api_key(key))
        self.session.add(api_key)
        await self.session.flush()
        return key, api_key

    async def find_active(self, key: str) -> ApiKey | None:
        """The unrevoked key whose plaintext is `key`, else None.

        One query through the unique prefix index, then a constant-time comparison of the hashes.
        Malformed keys are turned away without a query.
        """
        if not is_well_formed_api_key(key):
            return None
        api_key = await self.session.scalar(select(ApiKey).where(ApiKey.prefix == key_prefix(key)))
        if api_key is None:
            return None
        if not hmac.compare_digest(api_key.key_hash, hash_api_key(key)):
            return None
        if api_key.revoked_at is not None:
            return None
        return api_key

    async def get(self, key_id: int) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def revoke(self, key_id: int, *, user_id: int | None = None) -> bool:
        """Revoke the key (only if it belongs to `user_id`, when given). False if no such active key."""
        statement = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
        if user_id is not None:
            statement = statement.where(ApiKey.user_id == user_id)
        result = await self.session.execute(statement)
        return cast(CursorResult[Any], result).rowcount == 1

    async def mark_used(self, key_id: int) -> None:
        """Set `last_used_at` to now (callers decide how often: it is a write)."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(last_used_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )

    async def list_for_user(self, user_id: int, *, include_revoked: bool = True) -> Sequence[ApiKey]:
        """The user's keys, oldest first."""
        statement = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
        if not include_revoked:
            statement = statement.where(ApiKey.revoked_at.is_(None))
        return (await self.session.scalars(statement)).all()
