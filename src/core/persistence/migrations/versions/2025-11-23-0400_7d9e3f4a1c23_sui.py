"""sui: chain state, event cursor, wallets and USDC deposits

Revision ID: 7d9e3f4a1c23
Revises: 6c8f2d3e0b12
Create Date: 2025-11-23 04:00:00.000000+00:00

New tables only (README "Sui"): chain state from Atoma's events (`sui_nodes`, `sui_tasks`,
`sui_node_subscriptions`, `sui_stacks`, `sui_key_rotations`, `sui_node_public_keys`), the events
already applied and the event cursor, proven wallets with their one-time challenges, and credited
USDC deposits (digest as primary key: the replay guard).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7d9e3f4a1c23"
down_revision: str | Sequence[str] | None = "6c8f2d3e0b12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sui_applied_events",
        sa.Column("tx_digest", sa.String(length=64), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("tx_digest", "event_seq", name=op.f("sui_applied_events_pkey")),
    )
    op.create_table(
        "sui_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("sui_cursors_pkey")),
    )
    op.create_table(
        "sui_key_rotations",
        sa.Column("key_rotation_counter", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("nonce", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("key_rotation_counter", name=op.f("sui_key_rotations_pkey")),
    )
    op.create_table(
        "sui_node_public_keys",
        sa.Column("node_small_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("device_type", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("key_rotation_counter", sa.BigInteger(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("evidence_bytes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("node_small_id", "device_type", name=op.f("sui_node_public_keys_pkey")),
    )
    op.create_table(
        "sui_node_subscriptions",
        sa.Column("node_small_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("task_small_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("price_per_one_million_compute_units", sa.BigInteger(), nullable=False),
        sa.Column("max_num_compute_units", sa.BigInteger(), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("position", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("node_small_id", "task_small_id", name=op.f("sui_node_subscriptions_pkey")),
    )
    op.create_table(
        "sui_nodes",
        sa.Column("node_small_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sui_address", sa.String(length=66), nullable=True),
        sa.Column("badge_id", sa.String(length=66), nullable=True),
        sa.Column("public_address", sa.String(length=512), nullable=True),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("registration_timestamp", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("node_small_id", name=op.f("sui_nodes_pkey")),
    )
    op.create_table(
        "sui_stacks",
        sa.Column("stack_small_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("stack_id", sa.String(length=66), nullable=True),
        sa.Column("owner", sa.String(length=66), nullable=True),
        sa.Column("task_small_id", sa.BigInteger(), nullable=True),
        sa.Column("selected_node_id", sa.BigInteger(), nullable=True),
        sa.Column("num_compute_units", sa.BigInteger(), nullable=True),
        sa.Column("price_per_one_million_compute_units", sa.BigInteger(), nullable=True),
        sa.Column("created_digest", sa.String(length=64), nullable=True),
        sa.Column("in_settle_period", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("num_claimed_compute_units", sa.BigInteger(), nullable=True),
        sa.Column("is_claimed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("user_refund_amount", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("stack_small_id", name=op.f("sui_stacks_pkey")),
    )
    op.create_table(
        "sui_tasks",
        sa.Column("task_small_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("task_id", sa.String(length=66), nullable=True),
        sa.Column("model_name", sa.String(length=255), nullable=True),
        sa.Column("role", sa.Integer(), nullable=True),
        sa.Column("security_level", sa.Integer(), nullable=True),
        sa.Column("valid_until_epoch", sa.BigInteger(), nullable=True),
        sa.Column("is_deprecated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("deprecated_at_epoch", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("task_small_id", name=op.f("sui_tasks_pkey")),
    )
    op.create_table(
        "sui_usdc_deposits",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(length=66), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("sui_usdc_deposits_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("sui_usdc_deposits_pkey")),
    )
    with op.batch_alter_table("sui_usdc_deposits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("sui_usdc_deposits_user_id_idx"), ["user_id"], unique=False)

    op.create_table(
        "sui_wallet_challenges",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("sui_wallet_challenges_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("nonce", name=op.f("sui_wallet_challenges_pkey")),
    )
    with op.batch_alter_table("sui_wallet_challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("sui_wallet_challenges_user_id_idx"), ["user_id"], unique=False)

    op.create_table(
        "sui_wallets",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=66), nullable=False),
        sa.Column(
            "linked_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("sui_wallets_user_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("sui_wallets_pkey")),
        sa.UniqueConstraint("address", name=op.f("sui_wallets_address_key")),
    )

    op.create_table(
        "sui_stack_purchases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("task_small_id", sa.BigInteger(), nullable=False),
        sa.Column("price_paid", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("stack_small_id", sa.BigInteger(), nullable=True),
        sa.Column("ledger_stack_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("sui_stack_purchases_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("sui_stack_purchases_pkey")),
        sa.UniqueConstraint("stack_small_id", name=op.f("sui_stack_purchases_stack_small_id_key")),
    )
    op.create_index(op.f("sui_stack_purchases_user_id_idx"), "sui_stack_purchases", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("sui_stack_purchases_user_id_idx"), table_name="sui_stack_purchases")
    op.drop_table("sui_stack_purchases")
    op.drop_table("sui_wallets")
    with op.batch_alter_table("sui_wallet_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("sui_wallet_challenges_user_id_idx"))

    op.drop_table("sui_wallet_challenges")
    with op.batch_alter_table("sui_usdc_deposits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("sui_usdc_deposits_user_id_idx"))

    op.drop_table("sui_usdc_deposits")
    op.drop_table("sui_tasks")
    op.drop_table("sui_stacks")
    op.drop_table("sui_nodes")
    op.drop_table("sui_node_subscriptions")
    op.drop_table("sui_node_public_keys")
    op.drop_table("sui_key_rotations")
    op.drop_table("sui_cursors")
    op.drop_table("sui_applied_events")
