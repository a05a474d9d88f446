"""Alembic environment for atoma-proxy (SQLite and PostgreSQL, async drivers).

Programmatic runs (`atoma_proxy.core.persistence.migrate`) hand in an open connection through
`config.attributes["connection"]`, inside their own transaction. The alembic command line gets none:
then this script opens the same kind of locked migration transaction itself, for the URL given by
`-x url=...`, else `ATOMA_DATABASE__URL`, else alembic.ini's `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from atoma_proxy.core.persistence.database import normalize_url
from atoma_proxy.core.persistence.migrate import run_in_migration_transaction
from atoma_proxy.core.persistence.models import Base

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("ATOMA_DATABASE__URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError("no database URL: pass -x url=..., set ATOMA_DATABASE__URL or sqlalchemy.url")
    return normalize_url(url)


def run_migrations_offline() -> None:
    """Emit the migrations as SQL (`alembic upgrade head --sql`)."""
    url = _database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_in_migration_transaction(_database_url(), do_run_migrations))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
