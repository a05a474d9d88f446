"""accounts: user passwords and refresh tokens

Revision ID: 6c8f2d3e0b12
Revises: 5b7e1c2d9a01
Create Date: 2025-11-23 03:00:00.000000+00:00

New tables only (nothing existing changes): `user_passwords` (one argon2id hash per user, none for users
made by the command line) and `refresh_tokens` (SHA-256 of each refresh token, its family and expiry).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "6c8f2d3e0b12"
down_revision: str | Sequence[str] | None = "5b7e1c2d9a01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id_type() -> sa.types.TypeEngine[int]:
    # BIGINT, but INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "user_passwords",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("user_passwords_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("user_passwords_pkey")),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("length(token_hash) = 64", name=op.f("refresh_tokens_token_hash_length_check")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("refresh_tokens_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("refresh_tokens_pkey")),
    )
    op.create_index(op.f("refresh_tokens_family_id_idx"), "refresh_tokens", ["family_id"], unique=False)
    op.create_index(op.f("refresh_tokens_token_hash_idx"), "refresh_tokens", ["token_hash"], unique=True)
    op.create_index(op.f("refresh_tokens_user_id_idx"), "refresh_tokens", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("refresh_tokens_user_id_idx"), table_name="refresh_tokens")
    op.drop_index(op.f("refresh_tokens_token_hash_idx"), table_name="refresh_tokens")
    op.drop_index(op.f("refresh_tokens_family_id_idx"), table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("user_passwords")
