"""The database schema: every table cuaflow stores, as SQLAlchemy Core ``Table`` objects.

The schema is portable between SQLite (the embedded default) and PostgreSQL:
timestamps are epoch seconds in ``Float`` columns, documents are ``JSON``
(``JSONB`` on PostgreSQL), enumerations are strings guarded by ``CHECK``
constraints rather than native enum types, and ids are strings chosen by the
application.

The migrations in ``cuaflow/store/migrations/versions`` must create exactly
this schema; a test compares the two with Alembic's autogenerate, so a change
here needs a new migration.

JSON columns that may be absent (``output``, ``error``, ``metadata`` ...) store
Python ``None`` as SQL ``NULL``, so ``IS NULL`` finds them. Required JSON
columns store ``None`` as the JSON value ``null``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

# Explicit constraint names let later migrations drop or alter constraints by
# name, which SQLite's batch mode and PostgreSQL both need.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

WORKFLOW_STATUSES = ("active", "archived")
RUN_KINDS = ("workflow", "task")
RUN_STATUSES = (
    "queued",
    "running",
    "awaiting_human",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
)
JOURNAL_STATES = ("started", "completed")


def _json() -> TypeEngine[object]:
    return JSON().with_variant(JSONB(), "postgresql")


def _nullable_json() -> TypeEngine[object]:
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


def _run_fk() -> ForeignKey:
    # Deleting a run (retention clean-up) takes its journal, events, signals,
    # timers and billing rows with it.
    return ForeignKey("runs.id", ondelete="CASCADE")


workflows = Table(
    "workflows",
    metadata,
    Column("id", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("tenant_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("slug", String, nullable=True),
    Column("version_label", String, nullable=True),
    Column("dsl_version", String, nullable=False),
    Column("definition", _json(), nullable=False),
    Column("inputs_schema", _nullable_json(), nullable=True),
    Column("description", Text, nullable=True),
    Column("status", String, nullable=False, server_default="active"),
    Column("metadata", _nullable_json(), key="metadata_", nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("id", "version"),
    _one_of("status", WORKFLOW_STATUSES, "status"),
    Index("ix_workflows_tenant_id_id", "tenant_id", "id"),
    Index("ix_workflows_tenant_id_slug", "tenant_id", "slug"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String, nullable=False),
    Column("tenant_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("status", String, nullable=False),
    Column("workflow_id", String, nullable=True),
    Column("workflow_version", Integer, nullable=True),
    Column("parent_run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    Column("step_id", String, nullable=True),
    Column("definition", _json(), nullable=False),
    Column("params", _json(), nullable=False),
    Column("inputs", _json(), nullable=False),
    Column("output", _nullable_json(), nullable=True),
    Column("result", _nullable_json(), nullable=True),
    Column("error", _nullable_json(), nullable=True),
    Column("guards", _json(), nullable=False),
    Column("current_step_id", String, nullable=True),
    Column("awaiting_step_id", String, nullable=True),
    Column("awaiting_human_reason", Text, nullable=True),
    Column("steps_completed", Integer, nullable=False, server_default=text("0")),
    Column("spent_cents", Integer, nullable=False, server_default=text("0")),
    Column("iterations_used", Integer, nullable=False, server_default=text("0")),
    Column("last_seq", Integer, nullable=False, server_default=text("0")),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("lease_owner", String, nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("runnable_at", Float, nullable=True),
    Column("test_mode", Boolean, nullable=False, server_default=false()),
    Column("webhook_url", Text, nullable=True),
    Column("webhook_secret", String, nullable=True),
    Column("metadata", _nullable_json(), key="metadata_", nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("awaiting_human_since", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("deadline_at", Float, nullable=True),
    PrimaryKeyConstraint("id"),
    _one_of("kind", RUN_KINDS, "kind"),
    _one_of("status", RUN_STATUSES, "status"),
    Index("ix_runs_tenant_id_created_at", "tenant_id", "created_at"),
    Index("ix_runs_status", "status"),
    Index("ix_runs_runnable_at", "runnable_at"),
    Index("ix_runs_parent_run_id", "parent_run_id"),
    Index("ix_runs_workflow_id", "workflow_id"),
)

journal = Table(
    "journal",
    metadata,
    Column("run_id", String, _run_fk(), nullable=False),
    Column("path", String, nullable=False),
    Column("step_id", String, nullable=False),
    Column("step_type", String, nullable=False),
    Column("state", String, nullable=False),
    Column("result", _json(), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "path"),
    _one_of("state", JOURNAL_STATES, "state"),
)

events = Table(
    "events",
    metadata,
    Column("run_id", String, _run_fk(), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String, nullable=False),
    Column("step_id", String, nullable=True),
    Column("data", _json(), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
)

signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String, _run_fk(), nullable=False, index=True),
    Column("path", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("payload", _json(), nullable=False),
    Column("created_at", Float, nullable=False),
)

timers = Table(
    "timers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String, _run_fk(), nullable=False, index=True),
    Column("kind", String, nullable=False),
    Column("due_at", Float, nullable=False, index=True),
    Column("created_at", Float, nullable=False),
)

billing = Table(
    "billing",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String, _run_fk(), nullable=False, index=True),
    Column("task_run_id", String, nullable=True),
    Column("path", String, nullable=False),
    Column("cents", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("key_hash", String, nullable=False, unique=True),
    Column("prefix", String, nullable=False),
    Column("test_mode", Boolean, nullable=False, server_default=false()),
    Column("scopes", _json(), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("tenant_id", String, nullable=False),
    Column("key", String, nullable=False),
    Column("request_hash", String, nullable=False),
    Column("response", _json(), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("tenant_id", "key"),
)

WEBHOOK_DELIVERY_STATUSES = ("pending", "delivered", "failed", "stopped")

# The webhook outbox: one row per event to announce, written in the transaction
# that changes the run's status; ``seq`` orders the deliveries of one run.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String, nullable=False),
    Column("run_id", String, _run_fk(), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event", String, nullable=False),
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("retry_attempts", Integer, nullable=False, server_default=text("0")),
    Column("retry_started_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=True),
    Column("lease_owner", String, nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_attempt_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("run_id", "seq"),
    _one_of("status", WEBHOOK_DELIVERY_STATUSES, "status"),
    Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
)

secrets = Table(
    "secrets",
    metadata,
    Column("tenant_id", String, nullable=False),
    Column("name", String, nullable=False),
    # Fernet token of the value; the key lives outside the database.
    Column("ciphertext", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("tenant_id", "name"),
)

machines = Table(
    "machines",
    metadata,
    Column("tenant_id", String, nullable=False),
    Column("id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("config", _json(), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
)
