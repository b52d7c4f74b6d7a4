"""Model lifecycle: workflows (durable state machines run by the worker), the events of each model, and the model's
deployment spec, failure reason and health.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-04
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

DDL = [
    "ALTER TABLE models ADD COLUMN deployment JSONB",
    "ALTER TABLE models ADD COLUMN status_reason TEXT",
    "ALTER TABLE models ADD COLUMN health VARCHAR(16) DEFAULT 'unknown' NOT NULL",
    "ALTER TABLE models ADD COLUMN health_reason TEXT",
    "ALTER TABLE models ADD COLUMN unreachable_since TIMESTAMP WITH TIME ZONE",
    "ALTER TABLE models ADD COLUMN health_failures INTEGER DEFAULT 0 NOT NULL",
    "ALTER TABLE models ADD COLUMN health_checked_at TIMESTAMP WITH TIME ZONE",
    "CREATE TABLE model_workflows (id VARCHAR(40) NOT NULL, model_id VARCHAR(128) NOT NULL, "
    "kind VARCHAR(16) NOT NULL, state VARCHAR(16) NOT NULL, deployer VARCHAR(32) NOT NULL, "
    "step_index INTEGER DEFAULT 0 NOT NULL, step VARCHAR(32), step_started_at TIMESTAMP WITH TIME ZONE, "
    "step_deadline_at TIMESTAMP WITH TIME ZONE, target JSONB DEFAULT '{}' NOT NULL, data JSONB DEFAULT '{}' NOT NULL, "
    "error TEXT, created_by VARCHAR(256) NOT NULL, created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, "
    "updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, finished_at TIMESTAMP WITH TIME ZONE, "
    "PRIMARY KEY (id))",
    "CREATE UNIQUE INDEX uq_model_workflows_running ON model_workflows (model_id) WHERE state = 'running'",
    "CREATE INDEX ix_model_workflows_model ON model_workflows (model_id, created_at)",
    "CREATE TABLE model_events (id BIGSERIAL NOT NULL, model_id VARCHAR(128) NOT NULL, workflow_id VARCHAR(40), "
    "at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, kind VARCHAR(16) NOT NULL, status VARCHAR(16), "
    "step VARCHAR(32), message TEXT NOT NULL, detail JSONB, source_id VARCHAR(512), PRIMARY KEY (id))",
    "CREATE INDEX ix_model_events_model ON model_events (model_id, id)",
    "CREATE UNIQUE INDEX uq_model_events_source ON model_events (model_id, source_id) WHERE source_id IS NOT NULL",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS model_events")
    op.execute("DROP TABLE IF EXISTS model_workflows")
    for column in ("health_checked_at", "health_failures", "unreachable_since", "health_reason", "health",
                   "status_reason", "deployment"):  # fmt: skip
        op.execute(f"ALTER TABLE models DROP COLUMN IF EXISTS {column}")
