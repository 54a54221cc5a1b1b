"""The canonical workflow document: pydantic models for the nine step types.

These models accept only the canonical (reference) spelling. The brief's
spelling and other aliases are rewritten by :mod:`cuaflow.dsl.normalize` first,
so every later stage (validation, the interpreter, the API) sees one shape.
Types are checked here; rules that span steps (ids, references, limits) are
checked by :mod:`cuaflow.dsl.validate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, model_validator

from cuaflow.dsl.actions import Action
from cuaflow.dsl.conditions import Condition

DSL_VERSION: Literal["2026-06-01"] = "2026-06-01"
STEP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN)]
Identifier = Annotated[str, Field(pattern=NAME_PATTERN)]
CuaVersion = Literal["v1", "v3", "v4"]
OnAwaitingHuman = Literal["pause", "fail", "cancel"]


class _Model(BaseModel):
    # `while` and `as` are Python keywords: the models name them `while_`/`as_`
    # and read and write them by alias.
    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class _Step(_Model):
    id: StepId
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    save_as: Identifier | None = None


class VerifyCheck(_Model):
    """One check a v4 verifier runs after the agent says it is done."""

    type: Literal["command", "port", "text", "url"]
    command: str | None = None
    exit_code: int = 0
    port: int | str | None = None
    host: str = "127.0.0.1"
    text: str | None = None
    pattern: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _needs_its_field(self) -> VerifyCheck:
        needed = {"command": "command", "port": "port", "text": "text", "url": "pattern"}[self.type]
        if getattr(self, needed) is None:
            raise ValueError(f"a '{self.type}' check needs '{needed}'")
        return self


class TaskStep(_Step):
    """Give a computer-use agent a task on a machine."""

    type: Literal["task"]
    task: str = Field(min_length=1, max_length=20_000)
    machine_id: str | None = Field(default=None, max_length=200)
    cua_version: CuaVersion | None = None
    instructions: str | None = Field(default=None, max_length=20_000)
    system_prompt: str | None = Field(default=None, max_length=50_000)
    max_steps: int | None = Field(default=None, ge=1, le=1000)
    on_awaiting_human: OnAwaitingHuman | None = None
    actions: list[Action] | None = Field(default=None, max_length=1000)
    verify: list[VerifyCheck] | None = Field(default=None, max_length=50)
    model: str | None = Field(default=None, max_length=200)
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)


class AssertStep(_Step):
    """Fail the step (and, uncaught, the run) unless ``condition`` holds."""

    type: Literal["assert"]
    condition: Condition
    message: str | None = Field(default=None, max_length=2000)


class IfStep(_Step):
    """Run ``then`` when ``condition`` holds, otherwise ``else``."""

    type: Literal["if"]
    condition: Condition
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")


class LoopStep(_Step):
    """Run ``body`` ``count`` times, ``while`` a condition holds, or ``for_each`` item."""

    type: Literal["loop"]
    count: Annotated[int, Field(ge=0, le=100_000)] | str | None = None
    while_: Condition | None = Field(default=None, alias="while")
    for_each: list[Any] | str | None = None
    as_: Identifier | None = Field(default=None, alias="as")
    body: list[Step] = Field(min_length=1)
    max_iterations: int | None = None


class ParallelStep(_Step):
    """Run ``branches`` concurrently; the first failing branch cancels the others."""

    type: Literal["parallel"]
    branches: list[list[Step]] = Field(min_length=1)


class HumanApprovalStep(_Step):
    """Wait for a person to approve or reject."""

    type: Literal["human_approval"]
    message: str = Field(min_length=1, max_length=10_000)
    timeout_seconds: int | None = Field(default=None, ge=1, le=30 * 86_400)


class RetryStep(_Step):
    """Run ``body`` until it succeeds (and ``until`` holds), up to ``max_attempts`` times."""

    type: Literal["retry"]
    body: list[Step] = Field(min_length=1)
    max_attempts: int = 3
    backoff_seconds: float = Field(default=0.0, ge=0, le=3600)
    backoff_rate: float = Field(default=2.0, ge=1, le=10)
    until: Condition | None = None


class SucceedStep(_Step):
    """End the run as succeeded, with ``output`` as the run's output when given."""

    type: Literal["succeed"]
    output: Any = None


class FailStep(_Step):
    """End the run as failed with ``message``."""

    type: Literal["fail"]
    message: str = Field(min_length=1, max_length=10_000)


Step = Annotated[
    TaskStep
    | AssertStep
    | IfStep
    | LoopStep
    | ParallelStep
    | HumanApprovalStep
    | RetryStep
    | SucceedStep
    | FailStep,
    Discriminator("type"),
]

STEP_TYPES = (
    "task",
    "assert",
    "if",
    "loop",
    "parallel",
    "human_approval",
    "retry",
    "succeed",
    "fail",
)

# What each step type binds under its id (and its save_as name) for later templates.
BINDINGS: dict[str, tuple[str, ...]] = {
    "task": ("status", "passed", "result", "output", "run_id", "steps", "cost_cents", "error"),
    "assert": ("passed",),
    "if": ("branch",),
    "loop": ("iterations",),
    "parallel": ("branches",),
    "human_approval": ("approved", "note", "decided_at"),
    "retry": ("attempts", "succeeded"),
    "succeed": (),
    "fail": (),
}


class Guards(_Model):
    """Limits on a run; a run may override them when it starts."""

    budget_cents: int | None = Field(default=None, ge=0, le=100_000_000)
    max_iterations: int | None = Field(default=None, ge=1, le=1_000_000)
    deadline_seconds: int | None = Field(default=None, ge=1, le=86_400)


class Workflow(_Model):
    """A whole workflow definition in canonical form."""

    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")
    version: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=10_000)
    dsl_version: Literal["2026-06-01"] = DSL_VERSION
    inputs_schema: dict[str, Any] | None = None
    guards: Guards = Field(default_factory=Guards)
    steps: list[Step] = Field(min_length=1)
    output: Any = None
    metadata: dict[str, Any] | None = None


for _model in (IfStep, LoopStep, ParallelStep, RetryStep, Workflow):
    _model.model_rebuild()
