"""Every scripted example in examples/ really runs, on a real worker, terminal and SQLite file."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from cuaflow.store import runs as store
from tests.integration.engine_harness import Harness

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def example(stem: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES_DIR / f"{stem}.json").read_text())
    return document


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# What each example ends with when run with its default inputs and no answers needed.
EXPECTED: dict[str, tuple[str, Any]] = {
    "task": (
        "succeeded",
        {
            "file": "out/greeting.txt",
            "greeting_status": "succeeded",
            "greeting_agent_steps": 3,
            "greeting_cost_cents": 15,
            "optional_tool_passed": False,
            "optional_tool_error": "TASK_FAILED",
            "tolerant_passed": True,
        },
    ),
    "assert": ("succeeded", {"version": "1.2.0", "all_checks_passed": True}),
    "if": ("succeeded", {"config_branch": "then", "environment_branch": "else"}),
    "loop": (
        "succeeded",
        {"ticks": 3, "files_written": 2, "colours": 3, "grown": 4, "checked": True},
    ),
    "parallel": (
        "succeeded",
        {"branches": ["succeeded"] * 3, "b_took_steps": 1, "combined": True},
    ),
    "retry": ("succeeded", {"attempts": 3, "succeeded": True, "last_attempt": 3}),
    "succeed": (
        "succeeded",
        {"stopped": "at the end", "greeting": "Hello, world!", "more_work": True},
    ),
    "guards": ("succeeded", {"batches": 3, "report_cost_cents": 5}),
    "reference-form": ("succeeded", {"greeted": "world", "times": 2}),
}


@pytest.mark.parametrize("stem", EXPECTED)
async def test_example_runs_to_its_documented_end(harness: Harness, stem: str) -> None:
    """The example finishes with the status and output its README line promises."""
    run = await harness.run(example(stem))
    status, output = EXPECTED[stem]
    assert (run["status"], run["error"]) == (status, None)
    assert run["output"] == output


async def test_fail_example_fails_with_its_message(harness: Harness) -> None:
    """fail.json ends failed at its fail step, with the templated message."""
    run = await harness.run(example("fail"))
    assert run["status"] == "failed"
    assert run["error"] == {
        "code": "WORKFLOW_FAILED",
        "message": "RELEASE_NOTES.md is missing (TASK_FAILED), so the release stops here",
        "step_id": "missing_file",
    }


async def test_guards_example_stops_at_a_smaller_budget(harness: Harness) -> None:
    """guards.json with a 10-cent budget ends with GUARD_EXCEEDED after two agent steps."""
    run = await harness.run(example("guards"), budget_cents=10)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "GUARD_EXCEEDED"
    assert run["spent_cents"] == 10


async def test_human_approval_example_waits_then_publishes(harness: Harness) -> None:
    """human_approval.json waits with its rendered message, and an approval lets it publish."""
    run_id = harness.start(example("human_approval"))
    waiting = await harness.wait(run_id, {"awaiting_human"})
    assert waiting["awaiting_human_reason"] == "Publish v1.2.0? The build wrote dist/RELEASE."
    store.resume_run(harness.engine, run_id, approved=True, note="ship it")
    assert harness.worker is not None
    harness.worker.wake()
    run = await harness.wait(run_id)
    assert run["status"] == "succeeded"
    assert run["output"]["approved"] is True
    assert run["output"]["note"] == "ship it"
    assert (harness.data_dir / "runs" / run_id / "published" / "RELEASE").exists()


async def test_scripted_setup_and_test_serves_tests_and_stops(harness: Harness) -> None:
    """The scripted brief workflow starts a real server, tests it, and stops it after approval."""
    port = free_port()
    run_id = harness.start(example("setup-and-test-scripted"), inputs={"port": port})
    await harness.wait(run_id, {"awaiting_human"})
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the server is up while the run waits for a human
    store.resume_run(harness.engine, run_id, approved=True)
    assert harness.worker is not None
    harness.worker.wake()
    run = await harness.wait(run_id)
    assert run["status"] == "succeeded"
    assert run["output"] == "Setup and test workflow completed successfully"
    workdir = harness.data_dir / "runs" / run_id
    assert not (workdir / "server.pid").exists()
    assert await port_closes(port)


async def port_closes(port: int, within: float = 5.0) -> bool:
    """Whether nothing accepts connections on ``port`` any more, waiting up to ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        await asyncio.sleep(0.05)
    return False
