"""Key administration for the command line (`atoma-proxy keys create`)."""

from __future__ import annotations

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.persistence.api_keys import ApiKeyRepository, UserRepository
from atoma_proxy.core.persistence.database import create_engine, session_factory
from atoma_proxy.core.persistence.migrate import upgrade_database

__all__ = ["DEFAULT_KEY_NAME", "DEFAULT_USER_EMAIL", "create_api_key"]

DEFAULT_USER_EMAIL = "local@atoma.proxy"
DEFAULT_KEY_NAME = "default"


async def create_api_key(
    database_url: str,
    *,
    email: str = DEFAULT_USER_EMAIL,
    name: str = DEFAULT_KEY_NAME,
    migrate: bool = True,
) -> str:
    """Issue a key named `name` to the user `email` (created if new), commit, and return the plaintext.

    Uses an engine of its own, disposed before returning. With `migrate` (the default) the schema is first
    brought up to date, which is a no-op on a current database and safe to run concurrently.
    """
    if migrate:
        await upgrade_database(database_url)
    engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
    try:
        async with session_factory(engine)() as session, session.begin():
            user = await UserRepository(session).get_or_create_by_email(email)
            key, _ = await ApiKeyRepository(session).create(user.id, name)
        return key
    finally:
        await engine.dispose()
