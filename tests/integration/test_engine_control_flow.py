"""The interpreter's control flow, run end to end by a real worker on a real SQLite file."""

from __future__ import annotations

import sqlalchemy as sa

from cuaflow.engine.start import TaskRunOptions, start_task_run
from cuaflow.store import tables
from tests.integration.engine_harness import Harness, bash, wf


async def test_assert_if_and_output(harness: Harness) -> None:
    """Bindings flow into conditions and the workflow output, and `if` takes the right branch."""
    run = await harness.run(
        wf(
            {
                "id": "check",
                "type": "assert",
                "condition": {"op": "eq", "left": "{{inputs.n}}", "right": 3},
            },
            {
                "id": "branch",
                "type": "if",
                "condition": {"op": "gt", "left": "{{inputs.n}}", "right": 2},
                "then": [
                    {"id": "big", "type": "assert", "condition": {"op": "truthy", "value": True}}
                ],
                "else": [{"id": "small", "type": "fail", "message": "too small"}],
            },
            output={
                "n": "{{inputs.n}}",
                "branch": "{{branch.branch}}",
                "passed": "{{check.passed}}",
            },
        ),
        inputs={"n": 3},
    )
    assert run["status"] == "succeeded"
    assert run["output"] == {"n": 3, "branch": "then", "passed": True}
    assert run["spent_cents"] == 0


async def test_failed_assert_fails_the_run_with_its_message(harness: Harness) -> None:
    """An assert that does not hold ends the run failed with ASSERTION_FAILED and the step id."""
    run = await harness.run(
        wf(
            {
                "id": "a",
                "type": "assert",
                "message": "n was {{inputs.n}}",
                "condition": {"type": "field_equals", "field": "inputs.n", "value": 1},
            },
            {"id": "never", "type": "succeed"},
        ),
        inputs={"n": 2},
    )
    assert run["status"] == "failed"
    assert run["error"] == {"code": "ASSERTION_FAILED", "message": "n was 2", "step_id": "a"}
    assert "never" not in harness.bindings(run["id"])


async def test_loops_count_for_each_and_while(harness: Harness) -> None:
    """Each loop form runs its body the right number of times with vars bound per iteration."""
    run = await harness.run(
        wf(
            {
                "id": "counted",
                "type": "loop",
                "count": 3,
                "body": [bash("c", "echo {{vars.iteration}} >> count.txt")],
            },
            {
                "id": "each",
                "type": "loop",
                "for_each": ["a", "b"],
                "as": "letter",
                "body": [bash("e", "echo {{vars.letter}}{{vars.item}} >> each.txt")],
            },
            {
                "id": "until_three",
                "type": "loop",
                "while": {"op": "lt", "left": "{{vars.iteration}}", "right": 4},
                "body": [
                    {
                        "id": "w",
                        "type": "assert",
                        "condition": {"op": "exists", "value": "{{vars.iteration}}"},
                    }
                ],
            },
            bash("read", "cat count.txt each.txt"),
            output={
                "counted": "{{counted.iterations}}",
                "each": "{{each.iterations}}",
                "while": "{{until_three.iterations}}",
            },
        )
    )
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == {"counted": 3, "each": 2, "while": 4}
    workdir = harness.data_dir / "runs" / run["id"]
    assert (workdir / "count.txt").read_text().split() == ["0", "1", "2"]
    assert (workdir / "each.txt").read_text().split() == ["aa", "bb"]
    assert run["iterations_used"] == 9


async def test_retry_catches_failures_until_an_attempt_passes(harness: Harness) -> None:
    """A task that does not pass inside retry is retried; the retry binds its attempts."""
    run = await harness.run(
        wf(
            {
                "id": "flaky",
                "type": "retry",
                "max_attempts": 5,
                "backoff_seconds": 0.01,
                "body": [bash("try", "echo x >> tries.txt", "test $(wc -l < tries.txt) -ge 3")],
            },
            output="{{flaky.attempts}}",
        )
    )
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == 3
    # Three attempts of two actions, every performed action billed at 5 cents.
    assert run["steps_completed"] == 6
    assert run["spent_cents"] == 30


async def test_retry_exhausted_fails_with_the_last_error(harness: Harness) -> None:
    """When every attempt fails the retry step fails the run with the last attempt's error code."""
    run = await harness.run(
        wf(
            {
                "id": "r",
                "type": "retry",
                "max_attempts": 2,
                "body": [
                    {"id": "no", "type": "assert", "condition": {"op": "falsy", "value": True}}
                ],
            }
        )
    )
    assert run["status"] == "failed"
    assert run["error"]["code"] == "ASSERTION_FAILED"
    assert harness.bindings(run["id"])["r"] == {"attempts": 2, "succeeded": False}


async def test_retry_until_and_attempt_variable(harness: Harness) -> None:
    """`until` decides success after each attempt and vars.attempt counts from 1."""
    run = await harness.run(
        wf(
            {
                "id": "r",
                "type": "retry",
                "max_attempts": 4,
                "until": {"op": "gte", "left": "{{vars.attempt}}", "right": 2},
                "body": [bash("b", "echo {{vars.attempt}} >> attempts.txt")],
            }
        )
    )
    assert run["status"] == "succeeded"
    workdir = harness.data_dir / "runs" / run["id"]
    assert (workdir / "attempts.txt").read_text().split() == ["1", "2"]


async def test_task_that_fails_does_not_abort_the_run(harness: Harness) -> None:
    """Outside retry a task that does not pass binds passed=false and later steps decide."""
    run = await harness.run(
        wf(
            bash("t", "exit 7"),
            {
                "id": "check",
                "type": "if",
                "condition": {"op": "eq", "left": "{{t.status}}", "right": "failed"},
                "then": [{"id": "done", "type": "succeed", "output": "{{t.error.code}}"}],
            },
        )
    )
    assert run["status"] == "succeeded"
    assert run["output"] == "TASK_FAILED"


async def test_parallel_runs_branches_and_fails_fast(harness: Harness) -> None:
    """A failing branch cancels its slow sibling at once and fails the parallel step."""
    run = await harness.run(
        wf(
            {
                "id": "p",
                "type": "parallel",
                "branches": [
                    [bash("slow", "sleep 20", "touch slow-finished")],
                    [
                        {
                            "id": "boom",
                            "type": "assert",
                            "condition": {"op": "eq", "left": 1, "right": 2},
                        }
                    ],
                ],
            }
        ),
    )
    assert run["status"] == "failed"
    assert run["error"]["code"] == "ASSERTION_FAILED"
    assert run["finished_at"] - run["started_at"] < 5
    assert not (harness.data_dir / "runs" / run["id"] / "slow-finished").exists()
    assert harness.bindings(run["id"])["p"]["branches"] == ["cancelled", "failed"]


async def test_parallel_billing_is_exact(harness: Harness) -> None:
    """Agent steps in concurrent branches are all billed: spent_cents matches the actions."""
    branches = [[bash(f"b{i}", *["true"] * 4)] for i in range(8)]
    run = await harness.run(wf({"id": "p", "type": "parallel", "branches": branches}))
    assert run["status"] == "succeeded"
    assert run["steps_completed"] == 32
    assert run["spent_cents"] == 160


async def test_v1_steps_cost_eight_cents(harness: Harness) -> None:
    """cua_version v1 bills 8 cents per agent step."""
    run = await harness.run(wf(bash("t", "true", "true")), cua_version="v1")
    assert run["spent_cents"] == 16


async def test_fail_step_ends_the_run_even_inside_retry(harness: Harness) -> None:
    """A fail step is never caught by retry."""
    run = await harness.run(
        wf(
            {
                "id": "r",
                "type": "retry",
                "max_attempts": 3,
                "body": [{"id": "stop", "type": "fail", "error": "stop {{vars.attempt}}"}],
            }
        )
    )
    assert run["status"] == "failed"
    assert run["error"] == {"code": "WORKFLOW_FAILED", "message": "stop 1", "step_id": "stop"}


async def test_runtime_template_error_names_step_and_path(harness: Harness) -> None:
    """A template that cannot be rendered at run time fails its step, naming it and the path."""
    for step in (
        bash("t", "echo {{inputs.missing}}"),
        {"id": "t", "type": "succeed", "output": "{{inputs.missing}} x"},
    ):
        run = await harness.run(wf(step))
        assert run["status"] == "failed"
        assert run["error"]["code"] == "TEMPLATE_ERROR"
        assert run["error"]["step_id"] == "t"
        assert "'t'" in run["error"]["message"]
        assert "inputs.missing" in run["error"]["message"]


async def test_event_log_is_gap_free(harness: Harness) -> None:
    """Every run's events are numbered 1..n with no gap, ending in done."""
    run = await harness.run(
        wf({"id": "l", "type": "loop", "count": 20, "body": [bash("t", "true")]})
    )
    seqs = [event["seq"] for event in harness.events(run["id"])]
    assert seqs == list(range(1, len(seqs) + 1))
    assert harness.events(run["id"])[-1]["type"] == "done"


async def test_standalone_task_run(harness: Harness) -> None:
    """A task run started on its own is its own task run: billed, with result, ending as its task."""
    await harness.stop_worker()  # give the runs scripted actions before any worker sees them
    ids = {}
    for command, status in (("true", "succeeded"), ("exit 3", "failed")):
        row = start_task_run(
            harness.engine, TaskRunOptions(machine_id="local-terminal", task="do it")
        )
        assert row["id"].startswith("run_")
        definition = row["definition"]
        definition["steps"][0]["actions"] = [{"type": "bash", "command": command}]
        with harness.engine.begin() as conn:
            conn.execute(
                sa.update(tables.runs)
                .where(tables.runs.c.id == row["id"])
                .values(definition=definition)
            )
        ids[row["id"]] = status
    await harness.start_worker()
    for run_id, status in ids.items():
        run = await harness.wait(run_id)
        assert run["status"] == status
        assert run["spent_cents"] == 5
        assert run["result"]["passed"] is (status == "succeeded")
        types = [event["type"] for event in harness.events(run_id)]
        assert types.count("tool_call") == 1
        assert types[-1] == "done"
