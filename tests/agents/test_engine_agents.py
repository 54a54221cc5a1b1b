"""Task steps through the real engine: the simulated agent in test mode, a model otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from tests.agents.fakes import anthropic_turn, openai_turn, serve
from tests.integration.engine_harness import Harness, wf

MODEL_ENV = (
    "CUAFLOW_MODEL",
    "CUAFLOW_MODEL_V1",
    "CUAFLOW_MODEL_V3",
    "CUAFLOW_MODEL_V4",
    "CUAFLOW_OPENAI_BASE_URL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
)


@pytest.fixture(autouse=True)
def no_model_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test configures its own model, whatever the developer's environment says."""
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUAFLOW_MODEL_MAX_RETRIES", "0")


def task(step_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "task", "task": text, **extra}


async def run_test_mode(harness: Harness, workflow: dict[str, Any], **options: Any) -> str:
    run = start_workflow_run(
        harness.engine, parse_workflow(workflow), RunOptions(**options), test_mode=True
    )
    assert harness.worker is not None
    harness.worker.wake()
    await harness.wait(str(run["id"]))
    return str(run["id"])


async def test_test_mode_simulates_passing_failing_and_flaky_tasks(harness: Harness) -> None:
    """Plain tasks pass in 3 free steps, [fail] does not pass, [flaky:2] passes on its 2nd try."""
    workflow = wf(
        task("plain", "open the app"),
        task("broken", "open the app [fail]"),
        {
            "id": "again",
            "type": "retry",
            "max_attempts": 3,
            "body": [task("flaky", "open the app [flaky:2]")],
        },
    )
    run_id = await run_test_mode(harness, workflow)
    bindings = harness.bindings(run_id)
    plain, broken, flaky = bindings["plain"], bindings["broken"], bindings["flaky"]
    assert (plain["passed"], plain["steps"], plain["cost_cents"]) == (True, 3, 0)
    assert not broken["passed"]
    assert "[fail]" in broken["error"]["message"]
    assert flaky["passed"]
    assert bindings["again"] == {"attempts": 2, "succeeded": True}
    calls = [e for e in harness.events(run_id) if e["type"] == "tool_call"]
    assert [c["data"]["action"]["type"] for c in calls[:3]] == ["screenshot", "wait", "done"]
    assert all(e["data"]["cents"] == 0 for e in harness.events(run_id) if e["type"] == "billing")


async def test_test_mode_on_v4_carries_a_simulated_verdict(harness: Harness) -> None:
    """A v4 task in test mode gets a verdict without running any check."""
    workflow = wf(task("t", "check it", verify=[{"type": "command", "command": "false"}]))
    run_id = await run_test_mode(harness, workflow, cua_version="v4")
    result = harness.bindings(run_id)["t"]["result"]
    assert result["passed"] is True
    assert result["verdict"]["by"] == "simulated"


async def test_a_configured_openai_model_drives_the_terminal(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CUAFLOW_MODEL set, a task step without actions is carried out by the model."""
    with serve(
        openai_turn(("bash", {"command": "echo hi > f.txt"}), text="writing"),
        openai_turn(("done", {"summary": "wrote f.txt", "output": {"lines": 1}})),
    ) as server:
        monkeypatch.setenv("CUAFLOW_MODEL", "openai:fake-model")
        monkeypatch.setenv("CUAFLOW_OPENAI_BASE_URL", f"{server.url}/v1")
        run = await harness.run(wf(task("write", "write hi to f.txt")), task="ship it")
    assert run["status"] == "succeeded", run["error"]
    binding = harness.bindings(run["id"])["write"]
    assert binding["passed"]
    assert (binding["steps"], binding["cost_cents"]) == (2, 10)
    assert binding["output"] == {"lines": 1}
    assert binding["result"]["summary"] == "wrote f.txt"
    assert (harness.data_dir / "runs" / run["id"] / "f.txt").read_text() == "hi\n"
    types = [e["type"] for e in harness.events(run["id"])]
    assert types.count("tool_call") == 2
    assert "reasoning" in types
    first = server.requests[0].body["messages"][1]["content"]
    assert "ship it" in first  # the run's task, as the overall goal
    assert "write hi to f.txt" in first


async def test_v4_verify_checks_reject_a_wrong_result(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model says done; the step's check disagrees; the verdict lands in result.verdict."""
    step = task(
        "make", "create out.txt", verify=[{"type": "command", "command": "test -f out.txt"}]
    )
    with serve(openai_turn(("done", {"summary": "created it"}))) as server:
        monkeypatch.setenv("CUAFLOW_MODEL_V4", "openai:fake-model")
        monkeypatch.setenv("CUAFLOW_OPENAI_BASE_URL", f"{server.url}/v1")
        run = await harness.run(wf(step), cua_version="v4")
    binding = harness.bindings(run["id"])["make"]
    assert binding["passed"] is False
    assert binding["error"]["code"] == "VERIFICATION_FAILED"
    verdict = binding["result"]["verdict"]
    assert verdict["passed"] is False
    assert verdict["checks"][0]["command"] == "test -f out.txt"
    assert binding["result"]["summary"] == "created it"


async def test_the_steps_own_model_wins(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step naming ``anthropic:...`` uses Anthropic though CUAFLOW_MODEL names OpenAI."""
    with serve(anthropic_turn(("done", {"summary": "via anthropic"}))) as server:
        monkeypatch.setenv("CUAFLOW_MODEL", "openai:unused")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        run = await harness.run(wf(task("t", "say hi", model="anthropic:fake-claude")))
    binding = harness.bindings(run["id"])["t"]
    assert binding["result"]["summary"] == "via anthropic"
    assert server.requests[0].body["model"] == "fake-claude"


async def test_without_a_model_or_actions_the_task_explains_the_setup(harness: Harness) -> None:
    """No model configured and no actions: the task fails saying how to configure a model."""
    run = await harness.run(wf(task("t", "do something")))
    binding = harness.bindings(run["id"])["t"]
    assert binding["passed"] is False
    assert "CUAFLOW_MODEL=openai:<model>" in binding["error"]["message"]


async def test_a_malformed_model_spec_fails_the_task_not_the_engine(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model spec naming an unknown provider fails that task with a clear message."""
    monkeypatch.setenv("CUAFLOW_MODEL", "gemini:pro")
    run = await harness.run(wf(task("t", "do something")))
    assert run["status"] == "succeeded"
    error = harness.bindings(run["id"])["t"]["error"]
    assert "unknown model provider 'gemini'" in error["message"]
