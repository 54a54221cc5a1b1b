"""The scripted agent performing a task step's own actions on a real terminal."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cuaflow.agents.base import Agent, TaskOutcome
from cuaflow.agents.scripted import ScriptedAgent
from cuaflow.dsl.models import TaskStep
from cuaflow.errors import AgentError
from cuaflow.machines.base import ActionResult, Machine
from cuaflow.machines.terminal import TerminalMachine

_INPUT = re.compile(r"\{\{\s*inputs\.(\w+)\s*\}\}")


class BudgetExhausted(Exception):
    """Stands in for the engine's guard error."""


class FakeContext:
    """The engine's side of the interface: renders ``{{inputs.x}}`` and counts billing calls."""

    def __init__(
        self,
        step: TaskStep,
        machine: Machine,
        *,
        max_steps: int = 50,
        inputs: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        budget_steps: int | None = None,
    ) -> None:
        self.run_id = "run_1"
        self.step_path = step.id
        self.task = step.task
        self.step = step
        self.machine = machine
        self.max_steps = max_steps
        self.secrets: Mapping[str, str] = secrets or {}
        self.inputs = dict(inputs or {})
        self.budget_steps = budget_steps
        self.begun = 0
        self.ended: list[tuple[dict[str, Any], ActionResult]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def render(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.render(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.render(item) for item in value]
        if isinstance(value, str):
            whole = _INPUT.fullmatch(value)
            if whole:
                return self.inputs[whole.group(1)]
            return _INPUT.sub(lambda match: str(self.inputs[match.group(1)]), value)
        return value

    async def begin_agent_step(self) -> None:
        if self.budget_steps is not None and self.begun >= self.budget_steps:
            raise BudgetExhausted
        self.begun += 1

    async def end_agent_step(
        self,
        action: dict[str, Any],
        result: ActionResult,
        *,
        earlier: Sequence[tuple[dict[str, Any], ActionResult]] = (),
    ) -> None:
        self.ended.extend([*earlier, (action, result)])

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        self.events.append((type, data))

    async def save_artifact(self, name: str, data: bytes) -> str:
        return name


def _step(*actions: dict[str, Any]) -> TaskStep:
    return TaskStep.model_validate(
        {"id": "setup", "type": "task", "task": "set things up", "actions": list(actions)}
    )


@pytest.fixture
async def terminal(tmp_path: Path) -> AsyncIterator[TerminalMachine]:
    machine = TerminalMachine("local-terminal", tmp_path)
    yield machine
    await machine.close()


async def _run(ctx: FakeContext) -> TaskOutcome:
    agent: Agent = ScriptedAgent()
    return await agent.run(ctx)


async def test_all_actions_performed_and_billed(terminal: TerminalMachine) -> None:
    """Every action runs rendered, in order, each billed once, and the task passes."""
    step = _step(
        {"type": "bash", "command": "echo {{inputs.name}} > name.txt"},
        {"type": "wait_for_file", "path": "name.txt", "timeout_seconds": "{{inputs.wait}}"},
    )
    ctx = FakeContext(step, terminal, inputs={"name": "ada", "wait": 2})
    outcome = await _run(ctx)
    assert outcome == TaskOutcome(passed=True, status="succeeded", summary="performed 2 actions")
    assert (terminal.workdir / "name.txt").read_text() == "ada\n"
    assert ctx.begun == 2
    assert [action["type"] for action, _ in ctx.ended] == ["bash", "wait_for_file"]
    assert ctx.ended[0][0]["command"] == "echo ada > name.txt"
    assert ctx.ended[1][0]["timeout_seconds"] == 2
    assert all(result.ok for _, result in ctx.ended)


async def test_done_ends_the_task_with_its_output(terminal: TerminalMachine) -> None:
    """``done`` passes the task with its summary and output, bills a step, and stops there."""
    step = _step(
        {"type": "bash", "command": "true"},
        {
            "type": "done",
            "summary": "ready on {{inputs.port}}",
            "output": {"port": "{{inputs.port}}"},
        },
        {"type": "bash", "command": "touch after_done.txt"},
    )
    ctx = FakeContext(step, terminal, inputs={"port": 8080})
    outcome = await _run(ctx)
    assert outcome.passed
    assert outcome.status == "succeeded"
    assert outcome.summary == "ready on 8080"
    assert outcome.output == {"port": 8080}
    assert outcome.error is None
    assert ctx.begun == len(ctx.ended) == 2
    assert ctx.ended[1][1].ok
    assert not (terminal.workdir / "after_done.txt").exists()


async def test_fail_ends_the_task_with_its_reason(terminal: TerminalMachine) -> None:
    """``fail`` fails the task with TASK_FAILED and its reason, billed as a step."""
    step = _step(
        {"type": "fail", "reason": "the service is down"}, {"type": "bash", "command": "true"}
    )
    ctx = FakeContext(step, terminal)
    outcome = await _run(ctx)
    assert not outcome.passed
    assert outcome.status == "failed"
    assert outcome.error == {
        "code": "TASK_FAILED",
        "message": "actions[0] (fail): the service is down",
    }
    assert ctx.begun == len(ctx.ended) == 1
    assert ctx.ended[0][1].error == "the service is down"


async def test_failed_action_ends_the_task(terminal: TerminalMachine) -> None:
    """A command that exits non-zero fails the task, naming the action, its exit code and output."""
    step = _step(
        {"type": "bash", "command": "true"},
        {"type": "bash", "command": "echo 'no such table' >&2; exit 7"},
        {"type": "bash", "command": "touch after_failure.txt"},
    )
    ctx = FakeContext(step, terminal)
    outcome = await _run(ctx)
    assert not outcome.passed
    assert outcome.error == {
        "code": "TASK_FAILED",
        "message": (
            "actions[1] (bash) failed: command exited with code 7\nlast output:\nno such table\n"
        ),
    }
    assert ctx.begun == len(ctx.ended) == 2
    assert ctx.ended[1][1].exit_code == 7
    assert not (terminal.workdir / "after_failure.txt").exists()


async def test_more_actions_than_max_steps(terminal: TerminalMachine) -> None:
    """Only ``max_steps`` actions run; the rest fail the task with MAX_STEPS_EXCEEDED."""
    step = _step(*({"type": "bash", "command": f"touch {n}.txt"} for n in range(3)))
    ctx = FakeContext(step, terminal, max_steps=2)
    outcome = await _run(ctx)
    assert not outcome.passed
    assert outcome.error == {
        "code": "MAX_STEPS_EXCEEDED",
        "message": "the step has 3 actions but max_steps is 2; stopped after 2",
    }
    assert ctx.begun == len(ctx.ended) == 2
    assert sorted(path.name for path in terminal.workdir.iterdir()) == ["0.txt", "1.txt"]


async def test_action_invalid_after_rendering(terminal: TerminalMachine) -> None:
    """An action whose rendered field breaks its type fails the task naming the index and field."""
    step = _step(
        {"type": "bash", "command": "true"}, {"type": "wait_for_port", "port": "{{inputs.port}}"}
    )
    ctx = FakeContext(step, terminal, inputs={"port": "eighty"})
    outcome = await _run(ctx)
    assert not outcome.passed
    assert outcome.error is not None
    assert outcome.error["code"] == "TASK_FAILED"
    message = outcome.error["message"]
    assert message.startswith("actions[1] (wait_for_port) is invalid after rendering: port: ")
    assert "'eighty'" in message
    assert ctx.begun == 2
    assert len(ctx.ended) == 1


async def test_step_without_actions_needs_a_model(terminal: TerminalMachine) -> None:
    """A step with no actions cannot run scripted, and the error says how to configure a model."""
    step = TaskStep.model_validate({"id": "browse", "type": "task", "task": "find the price"})
    with pytest.raises(AgentError) as raised:
        await _run(FakeContext(step, terminal))
    message = str(raised.value)
    assert "task step 'browse' has no `actions`" in message
    for hint in ("CUAFLOW_MODEL=openai:<model>", "OPENAI_API_KEY", "CUAFLOW_OPENAI_BASE_URL"):
        assert hint in message
    assert "CUAFLOW_MODEL=anthropic:<model>" in message
    assert "ANTHROPIC_API_KEY" in message


async def test_engine_refusal_stops_before_the_action(terminal: TerminalMachine) -> None:
    """When the engine refuses another agent step (budget, deadline), nothing more is performed."""
    step = _step(
        {"type": "bash", "command": "touch first.txt"},
        {"type": "bash", "command": "touch second.txt"},
    )
    ctx = FakeContext(step, terminal, budget_steps=1)
    with pytest.raises(BudgetExhausted):
        await _run(ctx)
    assert (terminal.workdir / "first.txt").exists()
    assert not (terminal.workdir / "second.txt").exists()
    assert len(ctx.ended) == 1


async def test_secrets_stay_out_of_recorded_actions(terminal: TerminalMachine) -> None:
    """The recorded action keeps the secret's placeholder; the recorded output masks its value."""
    step = _step({"type": "bash", "command": "echo {{secrets.TOKEN}}"})
    ctx = FakeContext(step, terminal, secrets={"TOKEN": "hunter2-xyz"})
    outcome = await _run(ctx)
    assert outcome.passed
    action, result = ctx.ended[0]
    assert action["command"] == "echo {{secrets.TOKEN}}"
    assert result.output == "***\n"
