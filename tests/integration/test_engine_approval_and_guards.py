"""Human approval, cancellation and guards, run by a real worker on a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from cuaflow.errors import InvalidState
from cuaflow.store import runs as store
from tests.integration.engine_harness import Harness, bash, wf

APPROVAL = {"id": "ok", "type": "human_approval", "instruction": "Look at {{inputs.what}}"}


async def test_approval_suspends_and_resume_continues(harness: Harness) -> None:
    """A run waits in awaiting_human holding no lease, and an approval lets it finish."""
    run_id = harness.start(
        wf(
            bash("before", "echo x >> side-effects.txt"),
            APPROVAL,
            bash("after", "echo y >> side-effects.txt"),
            output={"approved": "{{ok.approved}}", "note": "{{ok.note}}"},
        ),
        inputs={"what": "the logs"},
    )
    waiting = await harness.wait(run_id, {"awaiting_human"})
    assert waiting["awaiting_step_id"] == "ok"
    assert waiting["awaiting_human_reason"] == "Look at the logs"
    assert waiting["lease_owner"] is None
    assert harness.worker is not None
    for _ in range(50):  # the run's task ends right after its suspension commits
        if harness.worker.active_runs == 0:
            break
        await asyncio.sleep(0.02)
    assert harness.worker.active_runs == 0
    store.resume_run(harness.engine, run_id, approved=True, note="fine")
    harness.worker.wake()
    run = await harness.wait(run_id)
    assert run["status"] == "succeeded"
    assert run["output"] == {"approved": True, "note": "fine"}
    lines = (harness.data_dir / "runs" / run_id / "side-effects.txt").read_text().split()
    assert lines == ["x", "y"]  # the step before the approval ran once
    types = [event["type"] for event in harness.events(run_id)]
    assert types.count("awaiting_human") == 1
    assert "resumed" in types


async def test_rejection_fails_the_run(harness: Harness) -> None:
    """A rejected approval fails the run with APPROVAL_REJECTED and the note."""
    run_id = harness.start(wf(APPROVAL), inputs={"what": "x"})
    await harness.wait(run_id, {"awaiting_human"})
    store.resume_run(harness.engine, run_id, approved=False, note="not today")
    run = await harness.wait(run_id)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "APPROVAL_REJECTED"
    assert "not today" in run["error"]["message"]


async def test_resume_only_from_awaiting_human(harness: Harness) -> None:
    """Resuming a run that is not waiting answers NOT_AWAITING_HUMAN; two resumes: one wins."""
    run_id = harness.start(wf(APPROVAL), inputs={"what": "x"})
    await harness.wait(run_id, {"awaiting_human"})
    store.resume_run(harness.engine, run_id)
    with pytest.raises(InvalidState) as second:
        store.resume_run(harness.engine, run_id)
    assert second.value.code == "NOT_AWAITING_HUMAN"
    assert (await harness.wait(run_id))["status"] == "succeeded"


async def test_approval_timeout(harness: Harness) -> None:
    """An approval nobody answers in time fails with APPROVAL_TIMEOUT, fired by a timer."""
    run_id = harness.start(wf({**APPROVAL, "timeout_seconds": 1}), inputs={"what": "x"})
    run = await harness.wait(run_id)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "APPROVAL_TIMEOUT"


@pytest.mark.parametrize(("policy", "status"), [("fail", "failed"), ("cancel", "cancelled")])
async def test_on_awaiting_human_policies(harness: Harness, policy: str, status: str) -> None:
    """on_awaiting_human fail/cancel end the run instead of waiting."""
    run = await harness.run(wf(APPROVAL), inputs={"what": "x"}, on_awaiting_human=policy)
    assert run["status"] == status
    assert run["error"]["step_id"] == "ok"


async def test_deadline_ends_a_run_waiting_for_a_human(harness: Harness) -> None:
    """deadline_seconds ends the run as timed_out even while it waits for a human."""
    run_id = harness.start(wf(APPROVAL), inputs={"what": "x"}, deadline_seconds=1)
    await harness.wait(run_id, {"awaiting_human"})
    run = await harness.wait(run_id)
    assert run["status"] == "timed_out"
    assert run["error"]["code"] == "DEADLINE_EXCEEDED"


async def test_deadline_stops_a_running_task(harness: Harness) -> None:
    """A task still running at the deadline is stopped and the run times out."""
    run = await harness.run(wf(bash("slow", "sleep 30")), deadline_seconds=1)
    assert run["status"] == "timed_out"
    assert run["finished_at"] - run["started_at"] < 3


async def test_cancel_while_a_task_runs(harness: Harness) -> None:
    """Cancelling a run whose task is running stops the agent within a second."""
    run_id = harness.start(wf(bash("slow", "sleep 30", "touch finished")))
    await harness.wait(run_id, {"running"})
    await asyncio.sleep(0.5)
    asked = time.time()
    assert store.request_cancel(harness.engine, run_id) == "running"
    run = await harness.wait(run_id, timeout=5)
    assert run["status"] == "cancelled"
    assert run["finished_at"] - asked < 1.5
    assert not (harness.data_dir / "runs" / run_id / "finished").exists()


async def test_cancel_while_waiting_and_after_finishing(harness: Harness) -> None:
    """A waiting run is cancelled at once; a finished run cannot be cancelled."""
    run_id = harness.start(wf(APPROVAL), inputs={"what": "x"})
    await harness.wait(run_id, {"awaiting_human"})
    assert store.request_cancel(harness.engine, run_id) == "cancelled"
    assert store.get_run(harness.engine, run_id)["status"] == "cancelled"
    with pytest.raises(InvalidState):
        store.request_cancel(harness.engine, run_id)


async def test_budget_guard(harness: Harness) -> None:
    """The budget is checked before every agent step; a breach ends the run with GUARD_EXCEEDED."""
    run = await harness.run(wf(bash("t", *["true"] * 5)), budget_cents=12)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "GUARD_EXCEEDED"
    assert run["spent_cents"] == 10  # two steps fit, the third would pass 12


async def test_max_iterations_guard_counts_all_loops(harness: Harness) -> None:
    """max_iterations counts the iterations of every loop in the run."""
    loop = {"type": "loop", "count": 3, "body": []}
    steps = [
        {
            **loop,
            "id": f"l{i}",
            "body": [
                {"id": f"a{i}", "type": "assert", "condition": {"op": "truthy", "value": True}}
            ],
        }
        for i in range(3)
    ]
    run = await harness.run(wf(*steps), max_iterations=7)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "GUARD_EXCEEDED"
    assert run["error"]["step_id"] == "l2"


async def test_background_processes_stop_when_the_run_ends_after_a_wait(harness: Harness) -> None:
    """A server started before an approval is still stopped when the run finishes later."""
    run_id = harness.start(
        wf(bash("serve", "nohup sleep 300 > /dev/null 2>&1 & echo $! > pid"), APPROVAL),
        inputs={"what": "x"},
    )
    await harness.wait(run_id, {"awaiting_human"})
    pid = int((harness.data_dir / "runs" / run_id / "pid").read_text())
    os.kill(pid, 0)  # still running while the run waits
    store.resume_run(harness.engine, run_id, approved=False)
    await harness.wait(run_id)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(pid):
        await asyncio.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]  # noqa: SIM115
    except OSError:
        return False
    return state != "Z"
