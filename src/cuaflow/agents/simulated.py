"""The ``simulated`` agent of test-mode runs: deterministic, free, touching no machine.

A task takes :data:`SIMULATED_STEPS` agent steps (fewer when ``max_steps`` is
lower), each with its ``tool_call`` events, the last one ``done`` or ``fail``:

- a task whose text contains ``[fail]`` does not pass;
- a task containing ``[flaky:N]`` passes from its N-th execution in the run on
  (``execution`` counts the executions of this task step in the run: retry
  attempts and loop iterations; a restart after a lost worker is not a new one);
- every other task passes.

With ``verify`` (``cua_version`` v4) a passing task carries a simulated verdict.
"""

from __future__ import annotations

import re
from typing import Any

from cuaflow.agents.base import AgentContext, TaskOutcome
from cuaflow.machines.base import ActionResult

SIMULATED_STEPS = 3
FAIL_MARK = "[fail]"
FLAKY_MARK = re.compile(r"\[flaky:(\d+)\]")


class SimulatedAgent:
    """Pretends to carry out a task, with an outcome fixed by its text and ``execution``."""

    def __init__(self, execution: int = 1, *, verify: bool = False) -> None:
        self.execution = execution
        self.verify = verify

    async def run(self, ctx: AgentContext) -> TaskOutcome:
        """Take the simulated steps and say how the task ended."""
        problem = self.problem(ctx.task)
        steps = max(1, min(SIMULATED_STEPS, ctx.max_steps))
        await ctx.emit("reasoning", {"text": "simulated agent (test mode): no model, no machine"})
        for index in range(steps - 1):
            await ctx.begin_agent_step()
            action: dict[str, Any] = {"type": "screenshot"} if index == 0 else {"type": "wait"}
            await ctx.end_agent_step(action, ActionResult(ok=True, output="simulated"))
        await ctx.begin_agent_step()
        if problem is not None:
            await ctx.end_agent_step(
                {"type": "fail", "reason": problem}, ActionResult(ok=False, error=problem)
            )
            return TaskOutcome.failed(problem)
        summary = f"simulated: completed in {steps} steps"
        await ctx.end_agent_step({"type": "done", "summary": summary}, ActionResult(ok=True))
        outcome = TaskOutcome.succeeded(summary)
        if self.verify:
            reason = "simulated verifier (test mode): checks were not run"
            outcome.verdict = {"passed": True, "reason": reason, "by": "simulated", "checks": []}
        return outcome

    def problem(self, task: str) -> str | None:
        """Why the simulation fails ``task`` at this execution, or None when it passes."""
        if FAIL_MARK in task:
            return "simulated failure: the task contains [fail]"
        flaky = FLAKY_MARK.search(task)
        if flaky is not None and self.execution < int(flaky.group(1)):
            return (
                f"simulated flaky failure: execution {self.execution}; "
                f"this task passes from execution {int(flaky.group(1))} on"
            )
        return None
