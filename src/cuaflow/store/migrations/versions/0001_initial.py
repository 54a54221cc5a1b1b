"""The initial schema: workflows, runs, their journal, events, signals, timers and billing.

Also the API's key and idempotency tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A migration is a frozen record of the schema it creates, so it spells its
# column types out here instead of importing them from cuaflow.store.tables.
def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _nullable_json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _runs_fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["runs.id"], name=op.f(f"fk_{table}_{column}_runs"), ondelete="CASCADE"
    )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("test_mode", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("scopes", _json(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "idempotency",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("request_hash", sa.String(), nullable=False),
        sa.Column("response", _json(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=True),
        sa.Column("workflow_version", sa.Integer(), nullable=True),
        sa.Column("parent_run_id", sa.String(), nullable=True),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("inputs", _json(), nullable=False),
        sa.Column("output", _nullable_json(), nullable=True),
        sa.Column("result", _nullable_json(), nullable=True),
        sa.Column("error", _nullable_json(), nullable=True),
        sa.Column("guards", _json(), nullable=False),
        sa.Column("current_step_id", sa.String(), nullable=True),
        sa.Column("awaiting_step_id", sa.String(), nullable=True),
        sa.Column("awaiting_human_reason", sa.Text(), nullable=True),
        sa.Column("steps_completed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("spent_cents", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("iterations_used", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_seq", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("runnable_at", sa.Float(), nullable=True),
        sa.Column("test_mode", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.String(), nullable=True),
        sa.Column("metadata", _nullable_json(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("awaiting_human_since", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("deadline_at", sa.Float(), nullable=True),
        sa.CheckConstraint("kind IN ('workflow', 'task')", name=op.f("ck_runs_kind")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'awaiting_human', 'succeeded', 'failed', "
            "'cancelled', 'timed_out')",
            name=op.f("ck_runs_status"),
        ),
        _runs_fk("parent_run_id", "runs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    op.create_index("ix_runs_runnable_at", "runs", ["runnable_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_tenant_id_created_at", "runs", ["tenant_id", "created_at"])
    op.create_index("ix_runs_workflow_id", "runs", ["workflow_id"])

    op.create_table(
        "workflows",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("slug", sa.String(), nullable=True),
        sa.Column("version_label", sa.String(), nullable=True),
        sa.Column("dsl_version", sa.String(), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("inputs_schema", _nullable_json(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(), server_default="active", nullable=False),
        sa.Column("metadata", _nullable_json(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'archived')", name=op.f("ck_workflows_status")),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_workflows")),
    )
    op.create_index("ix_workflows_tenant_id_id", "workflows", ["tenant_id", "id"])
    op.create_index("ix_workflows_tenant_id_slug", "workflows", ["tenant_id", "slug"])

    op.create_table(
        "billing",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task_run_id", sa.String(), nullable=True),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("cents", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _runs_fk("run_id", "billing"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing")),
    )
    op.create_index(op.f("ix_billing_run_id"), "billing", ["run_id"])

    op.create_table(
        "events",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=True),
        sa.Column("data", _json(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _runs_fk("run_id", "events"),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_events")),
    )
    op.create_table(
        "journal",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("step_type", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("result", _json(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.CheckConstraint("state IN ('started', 'completed')", name=op.f("ck_journal_state")),
        _runs_fk("run_id", "journal"),
        sa.PrimaryKeyConstraint("run_id", "path", name=op.f("pk_journal")),
    )
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _runs_fk("run_id", "signals"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    op.create_index(op.f("ix_signals_run_id"), "signals", ["run_id"])

    op.create_table(
        "timers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _runs_fk("run_id", "timers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
    )
    op.create_index(op.f("ix_timers_due_at"), "timers", ["due_at"])
    op.create_index(op.f("ix_timers_run_id"), "timers", ["run_id"])


def downgrade() -> None:
    """Undo this revision."""
    op.drop_index(op.f("ix_timers_run_id"), table_name="timers")
    op.drop_index(op.f("ix_timers_due_at"), table_name="timers")

    op.drop_table("timers")
    op.drop_index(op.f("ix_signals_run_id"), table_name="signals")

    op.drop_table("signals")
    op.drop_table("journal")
    op.drop_table("events")
    op.drop_index(op.f("ix_billing_run_id"), table_name="billing")

    op.drop_table("billing")
    op.drop_index("ix_workflows_tenant_id_slug", table_name="workflows")
    op.drop_index("ix_workflows_tenant_id_id", table_name="workflows")

    op.drop_table("workflows")
    op.drop_index("ix_runs_workflow_id", table_name="runs")
    op.drop_index("ix_runs_tenant_id_created_at", table_name="runs")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_runnable_at", table_name="runs")
    op.drop_index("ix_runs_parent_run_id", table_name="runs")

    op.drop_table("runs")
    op.drop_table("idempotency")
    op.drop_table("api_keys")
