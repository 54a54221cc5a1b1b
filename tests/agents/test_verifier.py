"""The v4 verifier: checks on the real terminal, and a model judging the final state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cuaflow.agents.base import TaskOutcome
from cuaflow.agents.config import ProviderSettings
from cuaflow.agents.providers.openai import OpenAIProvider
from cuaflow.agents.verifier import VERIFICATION_FAILED, VerifiedAgent, read_judgement
from cuaflow.machines.base import Observation
from cuaflow.machines.terminal import TerminalMachine
from tests.agents.fakes import RecordingContext, context_for, openai_turn, serve


class Says:
    """An agent that reports a fixed outcome without acting."""

    def __init__(self, outcome: TaskOutcome) -> None:
        self.outcome = outcome

    async def run(self, ctx: Any) -> TaskOutcome:
        return self.outcome


class Browserish(TerminalMachine):
    """A terminal that also reports a URL and page text, as a browser would."""

    async def observe(self) -> Observation:
        return Observation(text="Welcome back, Ada", url="http://127.0.0.1:8000/dashboard?tab=1")


def ctx_with(machine: TerminalMachine, verify: list[dict[str, Any]]) -> RecordingContext:
    return context_for(machine, "make the report", verify=verify)


async def test_a_failing_command_check_rejects_the_agents_done(tmp_path: Path) -> None:
    """The agent says done but the file is not there: the task fails with the verdict."""
    machine = TerminalMachine("t", tmp_path)
    ctx = ctx_with(machine, [{"type": "command", "command": "test -f report.txt"}])
    outcome = await VerifiedAgent(Says(TaskOutcome.succeeded("made it", {"n": 1}))).run(ctx)
    assert not outcome.passed
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["code"] == VERIFICATION_FAILED
    assert (outcome.summary, outcome.output) == ("made it", {"n": 1})
    verdict = outcome.verdict
    assert verdict is not None
    assert verdict["passed"] is False
    assert verdict["by"] == "checks"
    assert verdict["checks"][0]["passed"] is False
    assert "exited with 1 (expected 0)" in verdict["checks"][0]["detail"]
    assert ("text", {"message": f"verifier: {verdict['reason']}", "verdict": verdict}) in ctx.events


async def test_passing_checks_of_every_kind_keep_the_task_passed(tmp_path: Path) -> None:
    """Command, port, text and URL checks that hold give a passing verdict."""
    machine = Browserish("t", tmp_path)
    (tmp_path / "report.txt").write_text("ok")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    checks: list[dict[str, Any]] = [
        {"type": "command", "command": "grep -q ok report.txt"},
        {"type": "command", "command": "exit 3", "exit_code": 3},
        {"type": "port", "port": port},
        {"type": "text", "text": "Welcome back"},
        {"type": "url", "pattern": r"/dashboard\?tab=\d"},
        {"type": "url", "pattern": "http://127.0.0.1:*/dash*"},  # not a valid regex: a glob
    ]
    async with server:
        outcome = await VerifiedAgent(Says(TaskOutcome.succeeded("ok"))).run(
            ctx_with(machine, checks)
        )
    assert outcome.passed, outcome.verdict
    assert outcome.verdict is not None
    assert [check["passed"] for check in outcome.verdict["checks"]] == [True] * 6
    assert outcome.verdict["reason"] == "all 6 verify checks passed"


async def test_checks_that_do_not_hold_are_each_named(tmp_path: Path) -> None:
    """A closed port, missing text and a different URL each fail with their own detail."""
    machine = Browserish("t", tmp_path)
    checks: list[dict[str, Any]] = [
        {"type": "port", "port": 1},
        {"type": "text", "text": "Goodbye"},
        {"type": "url", "pattern": "^https://"},
    ]
    outcome = await VerifiedAgent(Says(TaskOutcome.succeeded("ok"))).run(ctx_with(machine, checks))
    assert outcome.verdict is not None
    assert [check["passed"] for check in outcome.verdict["checks"]] == [False] * 3
    assert "refuses connections" in outcome.verdict["reason"]
    assert "'Goodbye' is not on the screen" in outcome.verdict["reason"]


async def test_a_task_the_agent_failed_is_not_verified(tmp_path: Path) -> None:
    """Verification runs only after the agent says done; a failure passes through unchanged."""
    failed = TaskOutcome.failed("could not")
    ctx = ctx_with(TerminalMachine("t", tmp_path), [{"type": "command", "command": "true"}])
    assert await VerifiedAgent(Says(failed)).run(ctx) is failed


async def test_without_checks_a_model_judges_and_can_reject(tmp_path: Path) -> None:
    """With no checks the model judges the final observation; its rejection fails the task."""
    answer = '{"passed": false, "reason": "the report is empty"}'
    with serve(openai_turn(text=answer)) as server:
        judge = OpenAIProvider(
            "judge", ProviderSettings(api_key=None, base_url=f"{server.url}/v1", max_retries=0)
        )
        ctx = context_for(Browserish("t", tmp_path), "make the report")
        outcome = await VerifiedAgent(Says(TaskOutcome.succeeded("made it")), judge).run(ctx)
    assert not outcome.passed
    assert outcome.verdict == {
        "passed": False,
        "reason": "the report is empty",
        "by": "model",
        "checks": [],
    }
    messages = server.requests[0].body["messages"]
    assert "tools" not in server.requests[0].body
    assert "Decide whether the task has really been done" in messages[0]["content"]
    assert "make the report" in messages[1]["content"]
    assert "made it" in messages[1]["content"]
    assert "Welcome back, Ada" in messages[1]["content"]


async def test_without_checks_or_model_the_agents_result_stands(tmp_path: Path) -> None:
    """No way to verify: the verdict says so and the task keeps its result."""
    ctx = context_for(TerminalMachine("t", tmp_path))
    outcome = await VerifiedAgent(Says(TaskOutcome.succeeded("ok"))).run(ctx)
    assert outcome.passed
    assert outcome.verdict is not None
    assert outcome.verdict["by"] == "agent"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"passed": true, "reason": "all there"}', (True, "all there")),
        ('Sure. ```json\n{"passed": false, "reason": "no"}\n```', (False, "no")),
        ('{"passed": "yes"}', (False, None)),
        ("Looks good to me!", (False, None)),
        ("", (False, None)),
    ],
)
def test_read_judgement_fails_closed(answer: str, expected: tuple[bool, str | None]) -> None:
    """Only a JSON verdict with a boolean ``passed`` can pass; anything else is a rejection."""
    passed, reason = read_judgement(answer)
    assert passed is expected[0]
    if expected[1] is None:
        assert reason.startswith("the judging model's answer could not be read")
    else:
        assert reason == expected[1]
