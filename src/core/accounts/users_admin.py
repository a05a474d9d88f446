"""User administration for the command line (`atoma-proxy users create`)."""

from __future__ import annotations

from atoma_proxy.core.accounts import validation
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.repositories import AccountRepository
from atoma_proxy.core.persistence.admin import admin_session

__all__ = ["create_user"]


async def create_user(database_url: str, *, email: str, password: str | None = None) -> int:
    """Create a user (with a password, so that it can log in, if one is given); returns its id.

    Raises InvalidRequest for a malformed email or password and AlreadyExists (EMAIL_TAKEN) for a taken email.
    """
    email = validation.normalize_email(email)
    password_hash = await PasswordHasher().hash(validation.check_password(password)) if password is not None else None
    async with admin_session(database_url) as session:
        accounts = AccountRepository(session)
        user = await accounts.create_user(email)
        if password_hash is not None:
            await accounts.set_password_hash(user.id, password_hash)
        return user.id
