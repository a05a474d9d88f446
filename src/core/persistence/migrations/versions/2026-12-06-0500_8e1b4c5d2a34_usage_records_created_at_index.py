"""ledger: index usage_records by time

Revision ID: 8e1b4c5d2a34
Revises: 8e0f4a5b2d34
Create Date: 2026-12-06 01:00:00.000000+00:00

AccountAdminService.GetUsageStats reads every user's records of a time window (`created_at >= start AND
created_at < end`): this index makes that a range scan instead of a scan of the whole table.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8e1b4c5d2a34"
down_revision: str | Sequence[str] | None = "8e0f4a5b2d34"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("usage_records_created_at_idx", "usage_records", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("usage_records_created_at_idx", table_name="usage_records")
