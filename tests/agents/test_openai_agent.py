"""The agent loop through the real OpenAI SDK against a fake Chat Completions server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cuaflow.agents.base import MAX_STEPS_EXCEEDED
from cuaflow.agents.config import ProviderSettings
from cuaflow.agents.loop import LOOP_DETECTED, ModelAgent
from cuaflow.agents.prompts import Briefing
from cuaflow.agents.providers.openai import OpenAIProvider
from cuaflow.errors import AgentError, MachineError
from cuaflow.machines.base import Observation
from cuaflow.machines.terminal import TerminalMachine
from tests.agents.fakes import (
    FakeModelServer,
    Reply,
    context_for,
    openai_error,
    openai_turn,
    outcome_error_code,
    serve,
)


def provider(server: FakeModelServer, **settings: object) -> OpenAIProvider:
    options = {"api_key": None, "base_url": f"{server.url}/v1", "max_retries": 2, **settings}
    return OpenAIProvider("fake-model", ProviderSettings(**options))  # type: ignore[arg-type]


@pytest.fixture
def terminal(tmp_path: Path) -> TerminalMachine:
    return TerminalMachine("local-terminal", tmp_path)


async def test_bash_then_done_writes_the_file_and_passes(terminal: TerminalMachine) -> None:
    """The model's bash call runs on the real terminal, its output goes back, done ends the task."""
    with serve(
        openai_turn(("bash", {"command": "echo hi > f.txt && cat f.txt"}), text="Writing it."),
        openai_turn(("done", {"summary": "wrote f.txt", "output": {"file": "f.txt"}})),
    ) as server:
        ctx = context_for(terminal, "write hi to f.txt")
        outcome = await ModelAgent(provider(server)).run(ctx)
    assert outcome.passed, outcome.error
    assert (outcome.summary, outcome.output) == ("wrote f.txt", {"file": "f.txt"})
    assert (terminal.workdir / "f.txt").read_text() == "hi\n"
    assert [a["type"] for a in ctx.actions] == ["bash", "done"]
    assert ctx.begun == len(ctx.steps) == 2
    assert ctx.texts("reasoning") == ["Writing it."]
    first, second = (request.body for request in server.requests)
    assert first["model"] == "fake-model"
    assert first["messages"][0]["role"] == "system"
    assert "terminal" in first["messages"][0]["content"]
    assert "write hi to f.txt" in first["messages"][1]["content"]
    names = {tool["function"]["name"] for tool in first["tools"]}
    assert {"bash", "wait_for_port", "done", "fail"} <= names
    assert "click" not in names
    tool_message = second["messages"][3]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == second["messages"][2]["tool_calls"][0]["id"]
    assert "exit code: 0" in tool_message["content"]
    assert "hi" in tool_message["content"]


async def test_text_without_tool_calls_finishes_with_it_as_summary(
    terminal: TerminalMachine,
) -> None:
    """A model that answers in words alone has finished; its words are the summary."""
    with serve(openai_turn(text="Nothing to do: it is already there.")) as server:
        outcome = await ModelAgent(provider(server)).run(context_for(terminal))
    assert outcome.passed
    assert outcome.summary == "Nothing to do: it is already there."


async def test_fail_call_fails_the_task_with_the_reason(terminal: TerminalMachine) -> None:
    """A ``fail`` call ends the task not passed, with the model's reason."""
    with serve(openai_turn(("fail", {"reason": "no network"}))) as server:
        outcome = await ModelAgent(provider(server)).run(context_for(terminal))
    assert not outcome.passed
    assert outcome.error is not None
    assert "no network" in outcome.error["message"]


async def test_a_429_is_retried_then_the_turn_goes_on(terminal: TerminalMachine) -> None:
    """A rate-limited request is retried by the SDK, with backoff, and the task proceeds."""
    with serve(
        openai_error(429, **{"retry-after-ms": "20"}),
        openai_error(503, **{"retry-after-ms": "20"}),
        openai_turn(("done", {"summary": "ok"})),
    ) as server:
        outcome = await ModelAgent(provider(server)).run(context_for(terminal))
    assert outcome.passed
    assert len(server.requests) == 3


async def test_errors_past_the_retries_fail_the_task_run(terminal: TerminalMachine) -> None:
    """When the retries run out, the agent raises AgentError naming the status."""
    failing = [openai_error(500, **{"retry-after-ms": "1"})] * 3
    with serve(*failing) as server, pytest.raises(AgentError, match="500"):
        await ModelAgent(provider(server, max_retries=1)).run(context_for(terminal))
    assert len(server.requests) == 2


async def test_missing_key_without_base_url_is_a_clear_error(terminal: TerminalMachine) -> None:
    """Without a key for OpenAI's own API, the task fails saying which variable to set."""
    agent = ModelAgent(OpenAIProvider("gpt", ProviderSettings(api_key=None, base_url=None)))
    with pytest.raises(AgentError, match="OPENAI_API_KEY"):
        await agent.run(context_for(terminal))


async def test_the_same_action_on_an_unchanged_screen_ends_in_loop_detected(
    terminal: TerminalMachine,
) -> None:
    """Three identical turns on an identical observation stop the task as LOOP_DETECTED."""
    same = ("bash", {"command": "echo same"})
    with serve(*[openai_turn(same) for _ in range(6)]) as server:
        ctx = context_for(terminal)
        outcome = await ModelAgent(provider(server)).run(ctx)
    assert outcome_error_code(outcome) == LOOP_DETECTED
    # The first run changes the output; the next two repeat it; the fourth is refused.
    assert len(server.requests) == 4
    assert len(ctx.steps) == 3


async def test_max_steps_ends_a_model_that_keeps_going(terminal: TerminalMachine) -> None:
    """A model still acting after max_steps agent steps fails with MAX_STEPS_EXCEEDED."""
    turns = [openai_turn(("bash", {"command": f"echo {n}"})) for n in range(5)]
    with serve(*turns) as server:
        ctx = context_for(terminal, max_steps=2)
        outcome = await ModelAgent(provider(server)).run(ctx)
    assert outcome_error_code(outcome) == MAX_STEPS_EXCEEDED
    assert len(ctx.steps) == 2


async def test_bad_calls_are_reported_to_the_model_and_later_calls_skipped(
    terminal: TerminalMachine,
) -> None:
    """An unknown action and an unsupported one come back as errors; the task goes on."""
    with serve(
        openai_turn(("frobnicate", {}), ("bash", {"command": "touch skipped"})),
        openai_turn(("click", {"x": 1, "y": 2})),
        openai_turn(("done", {"summary": "gave up clicking"})),
    ) as server:
        ctx = context_for(terminal)
        outcome = await ModelAgent(provider(server)).run(ctx)
    assert outcome.passed
    assert not (terminal.workdir / "skipped").exists()
    second, third = server.requests[1].body, server.requests[2].body
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert "unknown action 'frobnicate'" in tool_messages[0]["content"]
    assert tool_messages[1]["content"].startswith("not performed")
    click_report = [m for m in third["messages"] if m["role"] == "tool"][-1]["content"]
    assert "cannot perform 'click'" in click_report
    # Each turn is one agent step, however many calls it made.
    assert [len(step) for step in ctx.steps] == [1, 1, 1]


async def test_several_actions_in_one_turn_are_one_agent_step(terminal: TerminalMachine) -> None:
    """Two calls in one turn run in order and are billed as one step with both recorded."""
    with serve(
        openai_turn(("bash", {"command": "echo a > a"}), ("bash", {"command": "cat a"})),
        openai_turn(("done", {"summary": "done"})),
    ) as server:
        ctx = context_for(terminal)
        await ModelAgent(provider(server)).run(ctx)
    assert ctx.begun == 2
    assert [[a["command"] for a, _ in ctx.steps[0]]] == [["echo a > a", "cat a"]]
    assert ctx.steps[0][1][1].output == "a\n"


async def test_prompts_carry_goal_instructions_and_replacement(terminal: TerminalMachine) -> None:
    """The run's task is the overall goal, instructions are appended, system_prompt replaces."""
    briefing = Briefing(goal="ship the release", instructions=("be brief", "use bash"))
    replaced = Briefing(system_prompt="You are a tester.", instructions=("step rule",))
    with serve(openai_turn(text="ok"), openai_turn(text="ok")) as server:
        await ModelAgent(provider(server), briefing).run(context_for(terminal, "tag it"))
        await ModelAgent(provider(server), replaced).run(context_for(terminal, "tag it"))
    system, user = server.requests[0].body["messages"][:2]
    assert system["content"].index("be brief") < system["content"].index("use bash")
    assert "computer-use agent" in system["content"]
    assert "ship the release" in user["content"]
    assert "tag it" in user["content"]
    other = server.requests[1].body["messages"][0]["content"]
    assert other.startswith("You are a tester.")
    assert "step rule" in other
    assert "computer-use agent" not in other


async def test_a_hanging_model_is_cancelled_promptly(terminal: TerminalMachine) -> None:
    """Cancelling a task while the model thinks stops it well within a second."""
    slow = Reply(openai_turn(text="late").body, delay=3)
    with serve(slow) as server:
        task = asyncio.ensure_future(ModelAgent(provider(server)).run(context_for(terminal)))
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert asyncio.get_running_loop().time() - started < 1


class Glitchy(TerminalMachine):
    """A terminal whose first ``failures`` observations fail, as a busy browser's capture can."""

    def __init__(self, workdir: Path, failures: int) -> None:
        super().__init__("glitchy", workdir)
        self.failures = failures

    async def observe(self) -> Observation:
        if self.failures > 0:
            self.failures -= 1
            raise MachineError("Unable to capture screenshot")
        return await super().observe()


async def test_one_failed_observation_is_tried_again(tmp_path: Path) -> None:
    """A machine that fails to observe once is asked again, and the task goes on."""
    with serve(openai_turn(("done", {"summary": "fine"}))) as server:
        outcome = await ModelAgent(provider(server)).run(context_for(Glitchy(tmp_path, 1)))
    assert outcome.passed


async def test_a_machine_that_cannot_be_observed_fails_the_task(tmp_path: Path) -> None:
    """A machine that keeps failing to observe ends the task with its error code."""
    with serve() as server:
        outcome = await ModelAgent(provider(server)).run(context_for(Glitchy(tmp_path, 2)))
    assert outcome_error_code(outcome) == "MACHINE_ERROR"
    assert outcome.error is not None
    assert "Unable to capture screenshot" in outcome.error["message"]
    assert server.requests == []


async def test_arguments_as_an_object_or_broken_json_are_handled(terminal: TerminalMachine) -> None:
    """Arguments sent as a JSON object work; arguments that are not JSON go back as an error."""
    as_object = openai_turn(("bash", {"command": "echo obj"}))
    function = as_object.body["choices"][0]["message"]["tool_calls"][0]["function"]
    function["arguments"] = {"command": "echo obj"}
    broken = openai_turn(("bash", {}))
    broken.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "{oops"
    with serve(as_object, broken, openai_turn(("done", {"summary": "ok"}))) as server:
        ctx = context_for(terminal)
        outcome = await ModelAgent(provider(server)).run(ctx)
    assert outcome.passed
    assert ctx.steps[0][0][1].output == "obj\n"
    report = [m for m in server.requests[2].body["messages"] if m["role"] == "tool"][-1]
    assert "not valid JSON" in report["content"]
    sent = server.requests[1].body["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert sent == '{"command": "echo obj"}'
