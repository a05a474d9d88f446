"""ledger: balances, credits, stacks, reservations, usage records, daily usage, user model prices

Revision ID: 5b7e1c2d9a01
Revises: 3154acad3c33
Create Date: 2025-11-23 02:00:00.000000+00:00

Money, tokens and units are BIGINT (micro-USD, never a float). The CHECK constraints are the
ledger's invariants: nothing negative, `debited + reserved <= credited` per balance and
`used_units + reserved_units <= total_units` per stack. See `ledger_models.py`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5b7e1c2d9a01"
down_revision: str | Sequence[str] | None = "3154acad3c33"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id_type() -> sa.types.TypeEngine[int]:
    # BIGINT, but INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f(f"{table}_user_id_fkey"), ondelete="CASCADE")


def _api_key_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["api_key_id"], ["api_keys.id"], name=op.f(f"{table}_api_key_id_fkey"), ondelete="SET NULL"
    )


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        _counter("credited"),
        _counter("debited"),
        _counter("reserved"),
        sa.CheckConstraint("credited >= 0", name=op.f("balances_credited_not_negative_check")),
        sa.CheckConstraint("debited >= 0", name=op.f("balances_debited_not_negative_check")),
        sa.CheckConstraint("reserved >= 0", name=op.f("balances_reserved_not_negative_check")),
        sa.CheckConstraint("debited + reserved <= credited", name=op.f("balances_within_credit_check")),
        _user_fk("balances"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("balances_pkey")),
    )
    op.create_table(
        "credits",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("note", sa.String(length=500), server_default="", nullable=False),
        _created_at(),
        sa.CheckConstraint("amount > 0", name=op.f("credits_amount_positive_check")),
        _user_fk("credits"),
        sa.PrimaryKeyConstraint("id", name=op.f("credits_pkey")),
        sa.UniqueConstraint("idempotency_key", name=op.f("credits_idempotency_key_key")),
    )
    op.create_index(op.f("credits_user_id_idx"), "credits", ["user_id"], unique=False)
    op.create_table(
        "stacks",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("total_units", sa.BigInteger(), nullable=False),
        _counter("used_units"),
        _counter("reserved_units"),
        sa.Column("price_per_million", sa.BigInteger(), nullable=False),
        sa.Column("price_paid", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.CheckConstraint("total_units > 0", name=op.f("stacks_total_units_positive_check")),
        sa.CheckConstraint("used_units >= 0", name=op.f("stacks_used_units_not_negative_check")),
        sa.CheckConstraint("reserved_units >= 0", name=op.f("stacks_reserved_units_not_negative_check")),
        sa.CheckConstraint("used_units + reserved_units <= total_units", name=op.f("stacks_units_within_total_check")),
        sa.CheckConstraint("price_per_million >= 0", name=op.f("stacks_price_not_negative_check")),
        sa.CheckConstraint("price_paid >= 0", name=op.f("stacks_price_paid_not_negative_check")),
        _user_fk("stacks"),
        sa.PrimaryKeyConstraint("id", name=op.f("stacks_pkey")),
    )
    op.create_index("stacks_user_id_model_idx", "stacks", ["user_id", "model"], unique=False)
    op.create_table(
        "reservations",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("node_id", sa.String(length=200), nullable=True),
        _counter("amount"),
        sa.Column("stack_id", sa.BigInteger(), nullable=True),
        _counter("units"),
        sa.Column("state", sa.String(length=16), server_default="held", nullable=False),
        sa.Column("instance_id", sa.String(length=100), nullable=False),
        _created_at(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount >= 0", name=op.f("reservations_amount_not_negative_check")),
        sa.CheckConstraint("units >= 0", name=op.f("reservations_units_not_negative_check")),
        sa.CheckConstraint(
            "state IN ('held', 'settled', 'released', 'expired')", name=op.f("reservations_state_valid_check")
        ),
        _user_fk("reservations"),
        _api_key_fk("reservations"),
        sa.ForeignKeyConstraint(
            ["stack_id"], ["stacks.id"], name=op.f("reservations_stack_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("reservations_pkey")),
        sa.UniqueConstraint("request_id", name=op.f("reservations_request_id_key")),
    )
    op.create_index(op.f("reservations_user_id_idx"), "reservations", ["user_id"], unique=False)
    op.create_index("reservations_state_expires_at_idx", "reservations", ["state", "expires_at"], unique=False)
    op.create_table(
        "usage_records",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("node_id", sa.String(length=200), nullable=True),
        _counter("prompt_tokens"),
        _counter("completion_tokens"),
        _counter("cost"),
        sa.Column("stack_id", sa.BigInteger(), nullable=True),
        _counter("stack_units"),
        sa.Column("latency_ms", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        _created_at(),
        sa.CheckConstraint("prompt_tokens >= 0", name=op.f("usage_records_prompt_tokens_not_negative_check")),
        sa.CheckConstraint("completion_tokens >= 0", name=op.f("usage_records_completion_tokens_not_negative_check")),
        sa.CheckConstraint("cost >= 0", name=op.f("usage_records_cost_not_negative_check")),
        sa.CheckConstraint("stack_units >= 0", name=op.f("usage_records_stack_units_not_negative_check")),
        _user_fk("usage_records"),
        _api_key_fk("usage_records"),
        sa.ForeignKeyConstraint(
            ["stack_id"], ["stacks.id"], name=op.f("usage_records_stack_id_fkey"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("usage_records_pkey")),
        sa.UniqueConstraint("request_id", name=op.f("usage_records_request_id_key")),
    )
    op.create_index("usage_records_user_id_id_idx", "usage_records", ["user_id", "id"], unique=False)
    op.create_table(
        "daily_usage",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        _counter("requests"),
        _counter("prompt_tokens"),
        _counter("completion_tokens"),
        _counter("cost"),
        _user_fk("daily_usage"),
        sa.PrimaryKeyConstraint("user_id", "day", "model", name=op.f("daily_usage_pkey")),
    )
    op.create_table(
        "user_model_prices",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("input_per_million", sa.BigInteger(), nullable=False),
        sa.Column("output_per_million", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.CheckConstraint("input_per_million >= 0", name=op.f("user_model_prices_input_not_negative_check")),
        sa.CheckConstraint("output_per_million >= 0", name=op.f("user_model_prices_output_not_negative_check")),
        _user_fk("user_model_prices"),
        sa.PrimaryKeyConstraint("id", name=op.f("user_model_prices_pkey")),
    )
    op.create_index("user_model_prices_user_id_model_idx", "user_model_prices", ["user_id", "model"], unique=False)


def downgrade() -> None:
    op.drop_index("user_model_prices_user_id_model_idx", table_name="user_model_prices")
    op.drop_table("user_model_prices")
    op.drop_table("daily_usage")
    op.drop_index("usage_records_user_id_id_idx", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index("reservations_state_expires_at_idx", table_name="reservations")
    op.drop_index(op.f("reservations_user_id_idx"), table_name="reservations")
    op.drop_table("reservations")
    op.drop_index("stacks_user_id_model_idx", table_name="stacks")
    op.drop_table("stacks")
    op.drop_index(op.f("credits_user_id_idx"), table_name="credits")
    op.drop_table("credits")
    op.drop_table("balances")
