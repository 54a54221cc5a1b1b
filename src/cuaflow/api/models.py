"""Pydantic models of request bodies and of the answers, as the OpenAPI document shows them.

Handlers build answers as plain dicts (see :mod:`cuaflow.api.serializers`)
and these models describe them; the schemathesis test checks that every
answer conforms to its model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cuaflow.engine.start import RunOptions, TaskRunOptions

RunStatus = Literal[
    "queued", "running", "awaiting_human", "succeeded", "failed", "cancelled", "timed_out"
]
Timestamp = Annotated[str, Field(description="ISO-8601 UTC, e.g. 2026-06-01T12:00:00Z")]


class ErrorDetail(BaseModel):
    """One invalid field: where it is in the request, and what is wrong."""

    loc: list[str | int]
    msg: str


class ErrorInfo(BaseModel):
    """The error itself; codes may add context fields (required_scope, current_state ...)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    type: Literal[
        "auth_error",
        "validation_error",
        "not_found_error",
        "state_error",
        "rate_limit_error",
        "server_error",
    ]
    request_id: str
    suggestion: str | None = None
    details: list[ErrorDetail] | None = None


class ErrorEnvelope(BaseModel):
    """Every error answer."""

    error: ErrorInfo


class WorkflowObject(BaseModel):
    """A saved workflow version."""

    id: str
    object: Literal["workflow"]
    name: str
    slug: str
    version: int
    version_label: str | None
    dsl_version: str
    definition: dict[str, Any]
    inputs_schema: dict[str, Any] | None
    description: str | None
    status: Literal["active", "archived"]
    metadata: dict[str, Any] | None
    created_at: Timestamp
    updated_at: Timestamp
    request_id: str


class WorkflowRunObject(BaseModel):
    """A run of a workflow."""

    id: str
    object: Literal["workflow.run"]
    status: RunStatus
    workflow_id: str | None
    workflow_version: int | None
    machine_id: str | None
    inputs: dict[str, Any]
    output: Any
    error: dict[str, Any] | None
    current_step_id: str | None
    awaiting_step_id: str | None
    awaiting_human_reason: str | None
    steps: dict[str, Any]
    iterations_used: int
    steps_completed: int
    spent_cents: int
    budget_cents: int | None
    max_iterations: int | None
    deadline_seconds: int | None
    on_awaiting_human: str
    test_mode: bool
    webhook_url: str | None
    webhook_secret: str | None
    metadata: dict[str, Any] | None
    created_at: Timestamp
    started_at: Timestamp | None
    awaiting_human_since: Timestamp | None
    finished_at: Timestamp | None
    request_id: str


class TaskRunObject(BaseModel):
    """A task run: one task for an agent on a machine (alone, or a workflow's task step)."""

    id: str
    object: Literal["agent.run"]
    status: RunStatus
    machine_id: str | None
    task: str | None
    cua_version: str
    instructions: str | None
    max_steps: int
    on_awaiting_human: str
    steps_completed: int
    cost_cents: int
    credits_charged: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    awaiting_human_reason: str | None
    parent_run_id: str | None
    workflow_id: str | None
    step_id: str | None
    step_path: str | None
    test_mode: bool
    webhook_url: str | None
    webhook_secret: str | None
    metadata: dict[str, Any] | None
    created_at: Timestamp
    started_at: Timestamp | None
    awaiting_human_since: Timestamp | None
    finished_at: Timestamp | None
    request_id: str


AnyRun = Annotated[WorkflowRunObject | TaskRunObject, Field(discriminator="object")]


class WorkflowList(BaseModel):
    """A page of workflows, newest first."""

    object: Literal["list"]
    data: list[WorkflowObject]
    has_more: bool
    request_id: str


class RunList(BaseModel):
    """A page of runs of both kinds, newest first."""

    object: Literal["list"]
    data: list[AnyRun]
    has_more: bool
    request_id: str


class ValidationResult(BaseModel):
    """A definition that passed validation, in canonical form."""

    object: Literal["workflow.validation"]
    valid: Literal[True]
    dsl_version: str
    definition: dict[str, Any]
    request_id: str


def _without_nulls(data: Any) -> Any:
    # Clients generated from the reference send every optional field, unset
    # ones as null; null means "not given" (the default), as it does there.
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value is not None}
    return data


class StartRunBody(RunOptions):
    """Start a run of a saved workflow (every field optional; null means the default)."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        return _without_nulls(data)


class TaskRunBody(TaskRunOptions):
    """Start a task run: ``machine_id`` and ``task`` required; null means the default."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        return _without_nulls(data)


class ResumeBody(BaseModel):
    """The answer to the approval a run waits for."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        return _without_nulls(data)

    approved: bool = True
    note: str | None = Field(default=None, max_length=2000)


class AdHocRunBody(StartRunBody):
    """Start a run of an inline definition that is not saved."""

    definition: dict[str, Any]
    inputs_schema: dict[str, Any] | None = None


WORKFLOW_BODY_DESCRIPTION = (
    "A workflow definition, in the brief's form `{name, version, steps, ...}` or the "
    "reference form `{name, slug, definition: {steps, output}, inputs_schema, description, "
    "metadata}`. See `cuaflow schema` for its JSON Schema."
)
