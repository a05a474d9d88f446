"""initial schema: users and api_keys

Revision ID: 3154acad3c33
Revises:
Create Date: 2025-11-23 01:00:00.000000+00:00

Runs on SQLite and PostgreSQL: use portable types (BigIntPK ids, DateTime(timezone=True), integer
micro-USD), name every constraint with op.f() per the naming convention in models.py, and change
existing tables inside `with op.batch_alter_table(...)` (SQLite rebuilds them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3154acad3c33"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id_type() -> sa.types.TypeEngine[int]:
    # BIGINT, but INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("users_pkey")),
        sa.UniqueConstraint("email", name=op.f("users_email_key")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("length(prefix) = 16", name=op.f("api_keys_prefix_length_check")),
        sa.CheckConstraint("length(key_hash) = 64", name=op.f("api_keys_key_hash_length_check")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("api_keys_user_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("api_keys_pkey")),
    )
    op.create_index(op.f("api_keys_prefix_idx"), "api_keys", ["prefix"], unique=True)
    op.create_index(op.f("api_keys_user_id_idx"), "api_keys", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("api_keys_user_id_idx"), table_name="api_keys")
    op.drop_index(op.f("api_keys_prefix_idx"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
