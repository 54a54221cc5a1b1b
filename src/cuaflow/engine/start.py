"""Starting a workflow run: the options a run accepts and the row that records it."""

from __future__ import annotations

import time
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from cuaflow.dsl.inputs import check_inputs
from cuaflow.dsl.models import Workflow
from cuaflow.dsl.parse import workflow_document
from cuaflow.errors import Issue, WorkflowInvalid
from cuaflow.store import runs as store
from cuaflow.store.writer import Event, UnitOfWork
from cuaflow.webhooks.subscription import webhook_secret_for


class RunOptions(BaseModel):
    """The body of a start-run request (every field optional); unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict)
    machine_id: str | None = Field(default=None, max_length=200)
    task: str | None = Field(default=None, max_length=20_000)
    cua_version: Literal["v1", "v3", "v4"] = "v3"
    instructions: str | None = Field(default=None, max_length=20_000)
    system_prompt: str | None = Field(default=None, max_length=50_000)
    max_steps: int = Field(default=50, ge=1, le=1000)
    budget_cents: int | None = Field(default=None, ge=0, le=100_000_000)
    max_iterations: int | None = Field(default=None, ge=1, le=1_000_000)
    deadline_seconds: int | None = Field(default=None, ge=1, le=86_400)
    on_awaiting_human: Literal["pause", "fail", "cancel"] = "pause"
    awaiting_human_timeout_seconds: int | None = Field(default=None, ge=1, le=30 * 86_400)
    webhook_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None
    version: int | None = Field(default=None, ge=1)


def start_workflow_run(
    engine: sa.Engine,
    workflow: Workflow,
    options: RunOptions,
    *,
    tenant_id: str = "default",
    workflow_id: str | None = None,
    workflow_version: int | None = None,
    test_mode: bool = False,
) -> dict[str, Any]:
    """Check the inputs, record a queued run, and return its row.

    Raises ``WorkflowInvalid`` (locations under ``inputs``) when the inputs do
    not satisfy the workflow's ``inputs_schema``; nothing is written then.
    """
    inputs, issues = check_inputs(workflow.inputs_schema, options.inputs)
    if issues:
        raise WorkflowInvalid(issues)
    guards = workflow.guards.model_dump()
    for name in ("budget_cents", "max_iterations", "deadline_seconds"):
        override = getattr(options, name)
        if override is not None:
            guards[name] = override
    row = _queued_run(
        "workflow",
        workflow,
        options,
        tenant_id=tenant_id,
        inputs=inputs,
        guards=guards,
        test_mode=test_mode,
        workflow_id=workflow_id,
        workflow_version=workflow_version,
    )
    store.insert_run(engine, row, UnitOfWork(events=[Event(row["id"], "status", _QUEUED)]))
    return row


def inputs_from_pairs(pairs: list[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into inputs; a value that parses as JSON is taken as JSON."""
    import json  # noqa: PLC0415  # only the CLI needs it

    inputs: dict[str, Any] = {}
    issues = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            issues.append(Issue(("inputs",), f"'{pair}' is not of the form key=value"))
            continue
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    if issues:
        raise WorkflowInvalid(issues)
    return inputs


class TaskRunOptions(BaseModel):
    """The body of ``POST /v1/runs``: one task for an agent on a machine."""

    model_config = ConfigDict(extra="forbid")

    machine_id: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=20_000)
    cua_version: Literal["v1", "v3", "v4"] = "v3"
    instructions: str | None = Field(default=None, max_length=20_000)
    system_prompt: str | None = Field(default=None, max_length=50_000)
    max_steps: int = Field(default=50, ge=1, le=1000)
    budget_cents: int | None = Field(default=None, ge=0, le=100_000_000)
    deadline_seconds: int | None = Field(default=None, ge=1, le=86_400)
    on_awaiting_human: Literal["pause", "fail", "cancel"] = "pause"
    awaiting_human_timeout_seconds: int | None = Field(default=None, ge=1, le=30 * 86_400)
    webhook_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None


def start_task_run(
    engine: sa.Engine,
    options: TaskRunOptions,
    *,
    tenant_id: str = "default",
    test_mode: bool = False,
) -> dict[str, Any]:
    """Record a queued task run (``run_...``) and return its row.

    The worker executes it as a one-step workflow whose task step is the run
    itself, so journalling, billing, guards and cancellation work as for a
    task step of a workflow.
    """
    step = {"id": "task", "type": "task", "task": options.task, "machine_id": options.machine_id}
    workflow = Workflow.model_validate({"name": "task", "steps": [step]})
    guards = {
        "budget_cents": options.budget_cents,
        "deadline_seconds": options.deadline_seconds,
        "max_iterations": None,
    }
    row = _queued_run(
        "task",
        workflow,
        options,
        tenant_id=tenant_id,
        inputs={},
        guards=guards,
        test_mode=test_mode,
    )
    store.insert_run(engine, row, UnitOfWork(events=[Event(row["id"], "status", _QUEUED)]))
    return row


_QUEUED = {"status": "queued"}
# Run options the interpreter and agents read back from runs.params.
_PARAMS = {
    "machine_id",
    "task",
    "cua_version",
    "instructions",
    "system_prompt",
    "max_steps",
    "on_awaiting_human",
    "awaiting_human_timeout_seconds",
}


def _queued_run(
    kind: str,
    workflow: Workflow,
    options: RunOptions | TaskRunOptions,
    *,
    tenant_id: str,
    inputs: dict[str, Any],
    guards: dict[str, Any],
    test_mode: bool,
    workflow_id: str | None = None,
    workflow_version: int | None = None,
) -> dict[str, Any]:
    """The row of a new queued run, claimable at once."""
    now = time.time()
    return {
        "id": store.new_id("wfr_" if kind == "workflow" else "run_"),
        "tenant_id": tenant_id,
        "kind": kind,
        "status": "queued",
        "workflow_id": workflow_id,
        "workflow_version": workflow_version,
        "definition": workflow_document(workflow),
        "params": options.model_dump(include=_PARAMS),
        "inputs": inputs,
        "guards": guards,
        "test_mode": test_mode,
        "webhook_url": options.webhook_url,
        # Refuses an unsafe URL (WorkflowInvalid at webhook_url) before anything is written.
        "webhook_secret": webhook_secret_for(options.webhook_url),
        "metadata_": options.metadata,
        "runnable_at": now,
        "created_at": now,
    }
