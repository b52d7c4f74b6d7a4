"""Usage batches already written, so a batch replayed after an outage (from memory or the disk spill) counts once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE usage_batches (id VARCHAR(32) PRIMARY KEY, "
        "written_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())"
    )
    op.execute("CREATE INDEX ix_usage_batches_written_at ON usage_batches (written_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS usage_batches")
