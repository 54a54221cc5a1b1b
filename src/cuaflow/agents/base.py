"""The agent interface: what an agent needs from the engine, and what it hands back.

The engine runs a task step by building an :class:`AgentContext` and calling
:meth:`Agent.run`. The context is the agent's only way to touch the run: it
renders templates, enforces the budget and deadline, bills agent steps and
records events durably. The agent decides which actions to perform on
``ctx.machine`` and when the task is over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cuaflow.dsl.models import TaskStep
from cuaflow.machines.base import ActionResult, Machine

TASK_FAILED = "TASK_FAILED"
MAX_STEPS_EXCEEDED = "MAX_STEPS_EXCEEDED"


@dataclass
class TaskOutcome:
    """How a task ended: whether it passed, a summary, structured output, and an error.

    ``error`` is ``{"code": ..., "message": ...}`` when the task did not pass.
    ``verdict`` is the v4 verifier's ``{passed, reason, checks}``, when one ran.
    """

    passed: bool
    status: Literal["succeeded", "failed"]
    summary: str | None = None
    output: Any = None
    error: dict[str, str] | None = None
    verdict: dict[str, Any] | None = None

    @classmethod
    def succeeded(cls, summary: str | None = None, output: Any = None) -> TaskOutcome:
        """A task that passed."""
        return cls(passed=True, status="succeeded", summary=summary, output=output)

    @classmethod
    def failed(cls, message: str, *, code: str = TASK_FAILED) -> TaskOutcome:
        """A task that did not pass, with an error ``code`` and ``message``."""
        return cls(passed=False, status="failed", error={"code": code, "message": message})


class AgentContext(Protocol):
    """What the engine gives an agent for one run of one task step."""

    @property
    def run_id(self) -> str:
        """The run this task belongs to."""
        ...

    @property
    def step_path(self) -> str:
        """The step instance's path, such as ``reconcile_each[2]/reconcile_one``."""
        ...

    @property
    def task(self) -> str:
        """The task text, rendered."""
        ...

    @property
    def step(self) -> TaskStep:
        """The task step as written (not rendered)."""
        ...

    @property
    def machine(self) -> Machine:
        """The machine the task runs on."""
        ...

    @property
    def max_steps(self) -> int:
        """How many agent steps the task may take."""
        ...

    @property
    def secrets(self) -> Mapping[str, str]:
        """The run's secrets, for the machine to fill ``{{secrets.NAME}}`` placeholders."""
        ...

    def render(self, value: Any) -> Any:
        """``value`` (an action as a dict, for example) with its templates rendered."""
        ...

    async def begin_agent_step(self) -> None:
        """Call before each agent step; raises when the budget or deadline is exhausted."""
        ...

    async def end_agent_step(
        self,
        action: dict[str, Any],
        result: ActionResult,
        *,
        earlier: Sequence[tuple[dict[str, Any], ActionResult]] = (),
    ) -> None:
        """Bill the agent step and record its ``tool_call``/``tool_result`` events.

        A model turn that performed several actions is still one agent step:
        ``earlier`` holds the actions it performed before ``action``, each
        recorded with its own events, the step billed once.
        """
        ...

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        """Record another event of the task, such as ``text`` or ``reasoning``."""
        ...

    async def save_artifact(self, name: str, data: bytes) -> str:
        """Keep a file of the run (a screenshot the model saw); the next agent step names it."""
        ...


class Agent(Protocol):
    """Carries out a task step on its machine."""

    async def run(self, ctx: AgentContext) -> TaskOutcome:
        """Work on ``ctx.task`` until it is done, failed, or out of steps."""
        ...
