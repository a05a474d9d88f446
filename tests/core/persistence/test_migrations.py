from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

from atoma_proxy.core.persistence import (
    Base,
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from atoma_proxy.core.persistence.migrate import ALEMBIC_INI, run_in_migration_transaction
from tests.core.persistence._helpers import recorded_statements, table_names
from tests.support.databases import DATABASE_KINDS, temporary_database, temporary_database_sync

ACCOUNT_TABLES = {"user_passwords", "refresh_tokens"}
LEDGER_TABLES = {"balances", "credits", "stacks", "reservations", "usage_records", "daily_usage", "user_model_prices"}
SUI_TABLES = {
    "sui_nodes",
    "sui_tasks",
    "sui_node_subscriptions",
    "sui_stacks",
    "sui_key_rotations",
    "sui_node_public_keys",
    "sui_applied_events",
    "sui_cursors",
    "sui_wallets",
    "sui_wallet_challenges",
    "sui_usdc_deposits",
    "sui_stack_purchases",
}
CONFIDENTIAL_TABLES = {"confidential_node_keys", "confidential_locks"}
APP_TABLES = {"users", "api_keys"} | ACCOUNT_TABLES | LEDGER_TABLES | SUI_TABLES | CONFIDENTIAL_TABLES
WRITES = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")


async def tables(url: str) -> set[str]:
    return await run_in_migration_transaction(url, table_names)


async def test_migrations_build_the_schema_from_scratch(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_database_url
    assert await tables(url) == set()
    assert await current_revision(url) is None

    # Nothing depends on the working directory (alembic.ini and the scripts are found from the package).
    monkeypatch.chdir(tmp_path)
    await upgrade_database(url)

    assert await tables(url) == APP_TABLES | {"alembic_version"}
    assert await current_revision(url) == head_revision()
    assert os.listdir(tmp_path) == []


def _schema(connection: Connection) -> dict[str, object]:
    inspector = inspect(connection)
    return {
        "columns": {
            table: sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table))
            for table in APP_TABLES
        },
        "indexes": {
            table: sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            )
            for table in APP_TABLES
        },
        "foreign_keys": sorted(
            (fk["name"], fk["referred_table"], fk["options"].get("ondelete"))
            for fk in inspector.get_foreign_keys("api_keys")
        ),
    }


async def test_the_schema_is_what_the_models_describe(database_url: str) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    assert await run_in_migration_transaction(database_url, differences) == []
    schema = await run_in_migration_transaction(database_url, _schema)
    assert ("api_keys_prefix_idx", ("prefix",), True) in schema["indexes"]["api_keys"]
    assert ("api_keys_user_id_idx", ("user_id",), False) in schema["indexes"]["api_keys"]
    assert schema["foreign_keys"] == [("api_keys_user_id_fkey", "users", "CASCADE")]


async def test_upgrade_is_idempotent(database_url: str) -> None:
    """A second upgrade (the fixture ran the first) changes nothing and keeps the data."""
    await run_in_migration_transaction(
        database_url, lambda c: c.execute(text("INSERT INTO users (email) VALUES ('kept@example.com')"))
    )
    schema_before = await run_in_migration_transaction(database_url, _schema)

    with recorded_statements(Engine) as statements:
        await upgrade_database(database_url)

    assert statements, "the upgrade did not even read the database"
    writes = [s for s in statements if s.lstrip().upper().startswith(WRITES)]
    assert writes == []
    assert await current_revision(database_url) == head_revision()
    assert await run_in_migration_transaction(database_url, _schema) == schema_before
    emails = await run_in_migration_transaction(
        database_url, lambda c: c.execute(text("SELECT email FROM users")).scalars().all()
    )
    assert emails == ["kept@example.com"]


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    schema = await run_in_migration_transaction(database_url, _schema)

    await downgrade_database(database_url, "base")
    assert await current_revision(database_url) is None
    assert await tables(database_url) & APP_TABLES == set()

    await upgrade_database(database_url)
    assert await current_revision(database_url) == head_revision()
    assert await run_in_migration_transaction(database_url, _schema) == schema
    await run_in_migration_transaction(
        database_url, lambda c: c.execute(text("INSERT INTO users (email) VALUES ('back@example.com')"))
    )


async def test_concurrent_upgrades_in_one_process(empty_database_url: str) -> None:
    """Alembic's `op`/`context` are process-wide: runs interleaved on one event loop must not mix."""
    async with temporary_database("sqlite", migrate=False) as other_url:
        await asyncio.gather(
            *(upgrade_database(empty_database_url) for _ in range(3)),
            upgrade_database(other_url),
        )
        for url in (empty_database_url, other_url):
            assert await current_revision(url) == head_revision()
            assert await tables(url) == APP_TABLES | {"alembic_version"}


_UPGRADE_SCRIPT = """
import asyncio, sys
from atoma_proxy.core.persistence import upgrade_database
asyncio.run(upgrade_database(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_concurrent_upgrades_from_several_processes(kind: str) -> None:
    """Processes starting together on a fresh database may all migrate: they queue, later ones do nothing."""
    with temporary_database_sync(kind, migrate=False) as url:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _UPGRADE_SCRIPT, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        try:
            outcomes = [(*process.communicate(timeout=120), process.returncode) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        assert [outcome for outcome in outcomes if outcome[-1] != 0] == []
        assert _version_sync(url) == [(head_revision(),)]


async def test_a_failing_migration_leaves_the_database_untouched(empty_database_url: str) -> None:
    """Each run is one transaction, DDL included (also on SQLite)."""

    def create_then_fail(connection: Connection) -> None:
        connection.execute(text("CREATE TABLE half_done (id INTEGER PRIMARY KEY)"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await run_in_migration_transaction(empty_database_url, create_then_fail)
    assert await tables(empty_database_url) == set()


def _version_sync(url: str) -> list[tuple[str]]:
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return connection.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            connection.close()
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchall()


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_alembic_command_line_uses_the_packaged_configuration(kind: str, tmp_path: Path) -> None:
    """`alembic -c src/core/persistence/alembic.ini -x url=... upgrade head`, from any directory."""
    with temporary_database_sync(kind, migrate=False) as url:
        env = {k: v for k, v in os.environ.items() if k != "ATOMA_DATABASE__URL"}
        command = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "-x", f"url={url}", "upgrade", "head"]
        offline = subprocess.run([*command, "--sql"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
        assert "CREATE TABLE users" in offline.stdout
        subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)

        version = _version_sync(url)
        assert version == [(head_revision(),)]
        assert list(tmp_path.iterdir()) == []
