"""Persistence: SQLAlchemy 2.0 models, async engines and sessions, Alembic migrations, API keys.

    engine = create_engine(settings.database)          # dispose it at shutdown
    await upgrade_database(settings.database.url)      # the only way the schema is made
    async with session_factory(engine)() as session, session.begin():
        api_key = await ApiKeyRepository(session).find_active(presented_key)

Repositories flush, never commit; the `session.begin()` block (the unit of work) commits.
"""

# `ledger_models` registers the ledger's tables on `Base.metadata` (Alembic's comparison needs every table).
from atoma_proxy.core.persistence import (
    confidential_models,  # noqa: F401
    ledger_models,  # noqa: F401
    sui_models,  # noqa: F401
)
from atoma_proxy.core.persistence.account_models import RefreshToken, UserPassword
from atoma_proxy.core.persistence.admin import create_api_key
from atoma_proxy.core.persistence.api_keys import (
    API_KEY_LENGTH,
    API_KEY_PREFIX,
    KEY_PREFIX_LENGTH,
    ApiKeyRepository,
    UserRepository,
    generate_api_key,
    hash_api_key,
    is_well_formed_api_key,
    key_prefix,
)
from atoma_proxy.core.persistence.database import create_engine, normalize_url, session_factory
from atoma_proxy.core.persistence.migrate import current_revision, downgrade_database, head_revision, upgrade_database
from atoma_proxy.core.persistence.models import ApiKey, Base, User

__all__ = [
    "API_KEY_LENGTH",
    "API_KEY_PREFIX",
    "KEY_PREFIX_LENGTH",
    "ApiKey",
    "ApiKeyRepository",
    "Base",
    "RefreshToken",
    "User",
    "UserPassword",
    "UserRepository",
    "create_api_key",
    "create_engine",
    "current_revision",
    "downgrade_database",
    "generate_api_key",
    "hash_api_key",
    "head_revision",
    "is_well_formed_api_key",
    "key_prefix",
    "normalize_url",
    "session_factory",
    "upgrade_database",
]
