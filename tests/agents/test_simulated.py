"""The test-mode agent is deterministic, takes three steps, and never touches the machine."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cuaflow.agents.simulated import SimulatedAgent
from cuaflow.dsl.actions import Action
from cuaflow.machines.base import ActionResult, Observation
from tests.agents.fakes import context_for


class Untouchable:
    """A machine that fails the test if anything uses it."""

    id = "untouchable"
    kind = "terminal"
    capabilities = frozenset({"bash"})

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        raise AssertionError("the simulated agent performed an action")

    async def observe(self) -> Observation:
        raise AssertionError("the simulated agent observed the machine")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("task", "execution", "passed"),
    [
        ("deploy", 1, True),
        ("deploy [fail]", 1, False),
        ("deploy [fail]", 5, False),
        ("deploy [flaky:3]", 1, False),
        ("deploy [flaky:3]", 2, False),
        ("deploy [flaky:3]", 3, True),
        ("deploy [flaky:3]", 4, True),
        ("deploy [flaky:1]", 1, True),
    ],
)
async def test_outcome_follows_the_task_text_and_execution(
    task: str, execution: int, passed: bool
) -> None:
    """[fail] never passes, [flaky:N] passes from execution N on, anything else passes."""
    ctx = context_for(Untouchable(), task)
    outcome = await SimulatedAgent(execution).run(ctx)
    assert outcome.passed is passed
    assert [len(step) for step in ctx.steps] == [1, 1, 1]
    assert ctx.actions[-1]["type"] == ("done" if passed else "fail")


async def test_fewer_steps_when_max_steps_is_lower() -> None:
    """With max_steps 1 the simulation takes one step, its last action."""
    ctx = context_for(Untouchable(), "deploy", max_steps=1)
    outcome = await SimulatedAgent().run(ctx)
    assert outcome.passed
    assert [action["type"] for action in ctx.actions] == ["done"]


async def test_verify_adds_a_simulated_verdict_to_passing_tasks_only() -> None:
    """On v4 a passing simulation carries a verdict; a failing one does not."""
    passing = await SimulatedAgent(verify=True).run(context_for(Untouchable(), "ok"))
    failing = await SimulatedAgent(verify=True).run(context_for(Untouchable(), "no [fail]"))
    assert passing.verdict is not None
    assert passing.verdict["passed"] is True
    assert failing.verdict is None
