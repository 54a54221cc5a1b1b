"""Task steps on registered machines: looked up per tenant, built per run, shared ones leased."""

from __future__ import annotations

import asyncio

import pytest

from cuaflow.errors import InvalidState, NotFound, WorkflowInvalid
from cuaflow.machines.registry import missing_programs
from cuaflow.store.machines import delete_machine, get_machine_spec, list_machines, register_machine
from tests.integration.engine_harness import Harness, bash, wf


async def test_task_runs_on_a_registered_terminal(harness: Harness) -> None:
    """A step naming a registered terminal machine runs its commands in that machine's workdir."""
    workdir = harness.data_dir / "elsewhere"
    register_machine(
        harness.engine, "box", "terminal", {"workdir": str(workdir)}, tenant_id="default"
    )
    run = await harness.run(wf(bash("t", "pwd > where.txt", machine_id="box")))
    assert run["status"] == "succeeded", run["error"]
    assert (workdir / "where.txt").read_text().strip() == str(workdir)


async def test_unknown_machine_fails_the_task_not_the_worker(harness: Harness) -> None:
    """A task on a machine that does not exist binds MACHINE_NOT_FOUND and later steps decide."""
    run = await harness.run(
        wf(
            bash("t", "true", machine_id="{{inputs.m}}"),
            {"id": "s", "type": "succeed", "output": "{{t.error.code}}"},
            inputs_schema={"type": "object", "properties": {"m": {"type": "string"}}},
        ),
        inputs={"m": "nowhere"},
    )
    assert run["status"] == "succeeded"
    assert run["output"] == "MACHINE_NOT_FOUND"


def test_machine_specs_are_checked_and_tenant_scoped(harness: Harness) -> None:
    """Bad kinds or configs are refused at their field; other tenants do not see a machine."""
    with pytest.raises(WorkflowInvalid) as caught:
        register_machine(harness.engine, "b", "desktop", {"width": -1}, tenant_id="t1")
    assert caught.value.issues[0].loc[:2] == ("config", "width")
    with pytest.raises(WorkflowInvalid):
        register_machine(harness.engine, "b", "teleporter", {}, tenant_id="t1")
    register_machine(
        harness.engine, "s", "ssh", {"host": "h", "password": "hunter2"}, tenant_id="t1"
    )
    with pytest.raises(InvalidState):
        register_machine(harness.engine, "s", "terminal", {}, tenant_id="t1")
    with pytest.raises(InvalidState):
        register_machine(harness.engine, "local-terminal", "terminal", {}, tenant_id="t1")
    listed = {m["id"]: m for m in list_machines(harness.engine, tenant_id="t1")}
    assert listed["s"]["config"]["password"] == "***"
    assert listed["local-terminal"]["builtin"] is True
    with pytest.raises(NotFound):
        get_machine_spec(harness.engine, "s", tenant_id="t2")
    delete_machine(harness.engine, "s", tenant_id="t1")
    with pytest.raises(NotFound):
        delete_machine(harness.engine, "s", tenant_id="t1")


async def test_shared_machine_serves_one_task_at_a_time(harness: Harness) -> None:
    """Two runs on one desktop take turns; the second's wait shows in its events."""
    if missing_programs("desktop"):
        pytest.skip(f"desktop programs missing: {missing_programs('desktop')}")
    register_machine(harness.engine, "screen", "desktop", {}, tenant_id="default")
    step = bash("t", "sleep 1", machine_id="screen")
    first = harness.start(wf(step))
    second = harness.start(wf(step))
    runs = await asyncio.gather(harness.wait(first), harness.wait(second))
    assert [run["status"] for run in runs] == ["succeeded", "succeeded"]
    waits = [
        event
        for run_id in (first, second)
        for event in harness.events(run_id)
        if event["type"] == "text" and "waits for machine 'screen'" in event["data"]["message"]
    ]
    assert len(waits) == 1
    # Each task sleeps 1 s; taking turns, the two cannot both be done in under 2 s.
    assert max(run["finished_at"] for run in runs) - min(run["started_at"] for run in runs) >= 1.9
