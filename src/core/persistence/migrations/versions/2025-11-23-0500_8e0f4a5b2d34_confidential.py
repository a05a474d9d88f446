"""confidential: node keys and locks shared by every core instance

Revision ID: 8e0f4a5b2d34
Revises: 7d9e3f4a1c23
Create Date: 2025-11-23 05:00:00.000000+00:00

New tables only (docs/confidential.md): `confidential_node_keys` (each node's latest accepted key,
rotation, evidence and validity) and `confidential_locks` (each lock granted, the reservation it
holds, and whether it was consumed or released), so any core instance serves a lock made by another.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8e0f4a5b2d34"
down_revision: str | Sequence[str] | None = "7d9e3f4a1c23"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "confidential_node_keys",
        sa.Column("node_id", sa.String(length=255), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("rotation_counter", sa.BigInteger(), nullable=False),
        sa.Column("rotation_nonce", sa.String(length=20), nullable=False),
        sa.Column("evidence", sa.LargeBinary(), nullable=False),
        sa.Column("signing_key", sa.LargeBinary(), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("confidential_node_keys_pkey")),
    )
    op.create_table(
        "confidential_locks",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("endpoint", sa.String(length=32), nullable=False),
        sa.Column("max_num_tokens", sa.Integer(), nullable=False),
        sa.Column("rotation_counter", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("metered", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("released", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("confidential_locks_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("confidential_locks_pkey")),
    )
    op.create_index(op.f("confidential_locks_expires_at_idx"), "confidential_locks", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("confidential_locks_expires_at_idx"), table_name="confidential_locks")
    op.drop_table("confidential_locks")
    op.drop_table("confidential_node_keys")
