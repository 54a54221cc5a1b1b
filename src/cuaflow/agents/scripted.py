"""The ``scripted`` agent: performs a task step's own ``actions``, with no model.

Each action is one billed agent step, ``done`` and ``fail`` included. An action
is rendered with the run's current bindings right before it runs, so it can
use what earlier actions and steps produced, and is checked again after
rendering (a port that rendered to ``"abc"`` ends the task). A template that
cannot be rendered raises the engine's :class:`~cuaflow.errors.TemplateError`,
which this agent lets through.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cuaflow.agents.base import MAX_STEPS_EXCEEDED, AgentContext, TaskOutcome
from cuaflow.dsl.actions import ACTION_ADAPTER, Done, Fail
from cuaflow.errors import AgentError
from cuaflow.machines.base import ActionResult

# How much of a failed action's output the task's error message repeats.
OUTPUT_TAIL_CHARS = 1000
# How much of an invalid value the error message shows.
INPUT_REPR_CHARS = 200


class ScriptedAgent:
    """Performs ``ctx.step.actions`` in order on ``ctx.machine``.

    The task passes when ``done`` is reached or every action succeeded; it
    fails at a ``fail`` action, at the first action that does not succeed, and
    when there are more actions than ``ctx.max_steps``.
    """

    async def run(self, ctx: AgentContext) -> TaskOutcome:
        """Perform the step's actions and say how the task ended."""
        actions = ctx.step.actions
        if not actions:
            raise AgentError(_no_actions_message(ctx.step.id))
        for index, action in enumerate(actions):
            if index >= ctx.max_steps:
                return TaskOutcome.failed(
                    f"the step has {len(actions)} actions but max_steps is {ctx.max_steps}; "
                    f"stopped after {ctx.max_steps}",
                    code=MAX_STEPS_EXCEEDED,
                )
            await ctx.begin_agent_step()
            rendered = ctx.render(action.model_dump(mode="json", by_alias=True))
            try:
                performed = ACTION_ADAPTER.validate_python(rendered)
            except ValidationError as error:
                return TaskOutcome.failed(
                    f"actions[{index}] ({action.type}) is invalid after rendering: "
                    f"{_describe(error)}"
                )
            record: dict[str, Any] = (
                rendered if isinstance(rendered, dict) else performed.model_dump(mode="json")
            )
            if isinstance(performed, Done):
                done = ActionResult(ok=True, output=performed.summary or "task done")
                await ctx.end_agent_step(record, done)
                return TaskOutcome.succeeded(performed.summary, performed.output)
            if isinstance(performed, Fail):
                reason = performed.reason or "no reason given"
                await ctx.end_agent_step(record, ActionResult(ok=False, error=reason))
                return TaskOutcome.failed(f"actions[{index}] (fail): {reason}")
            result = await ctx.machine.perform(performed, secrets=ctx.secrets)
            await ctx.end_agent_step(record, result)
            if not result.ok:
                return TaskOutcome.failed(_failure_message(index, performed.type, result))
        return TaskOutcome.succeeded(f"performed {len(actions)} actions")


def _no_actions_message(step_id: str) -> str:
    return (
        f"task step '{step_id}' has no `actions` and no model is configured. Set "
        "CUAFLOW_MODEL=openai:<model> (with OPENAI_API_KEY, and CUAFLOW_OPENAI_BASE_URL for "
        "another OpenAI-compatible server) or CUAFLOW_MODEL=anthropic:<model> (with "
        "ANTHROPIC_API_KEY), or give the step `actions` to run it scripted."
    )


def _describe(error: ValidationError) -> str:
    """One problem per field, such as ``port: Input should be a valid integer (got 'abc')``."""
    problems: dict[str, str] = {}
    for issue in error.errors():
        field = str(issue["loc"][1]) if len(issue["loc"]) > 1 else "action"
        got = repr(issue["input"])
        if len(got) > INPUT_REPR_CHARS:
            got = got[:INPUT_REPR_CHARS] + "..."
        problems.setdefault(field, f"{issue['msg']} (got {got})")
    return "; ".join(f"{field}: {problem}" for field, problem in problems.items())


def _failure_message(index: int, action_type: str, result: ActionResult) -> str:
    detail = result.error
    if detail is None:
        detail = "no reason given" if result.exit_code is None else f"exit code {result.exit_code}"
    message = f"actions[{index}] ({action_type}) failed: {detail}"
    if result.output:
        message += f"\nlast output:\n{result.output[-OUTPUT_TAIL_CHARS:]}"
    return message
