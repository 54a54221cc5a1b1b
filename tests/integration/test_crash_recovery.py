"""SIGKILL the worker process in the middle of many runs, restart it, and check nothing is lost."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store import tables
from cuaflow.store.database import open_database
from tests.db import database_url
from tests.processes import check_recovered_run, kill, start_worker, wait_until

pytestmark = pytest.mark.slow

RUNS = 12


def _act(path: str) -> dict[str, Any]:
    # Every performed action leaves one line in the run's side-effect log.
    return {"type": "bash", "command": f"sleep 0.15; echo '{path}' >> effects.log"}


def _task(step_id: str, path: str, actions: int = 2) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "task",
        "task": step_id,
        "actions": [_act(f"{path}:{i}") for i in range(actions)],
    }


WORKFLOW: dict[str, Any] = {
    "name": "crash-test",
    "steps": [
        _task("first", "first"),
        {
            "id": "fan",
            "type": "parallel",
            "branches": [[_task("left", "left")], [_task("right", "right", 3)]],
        },
        {
            "id": "each",
            "type": "loop",
            "count": 3,
            "body": [_task("inner", "inner-{{vars.iteration}}", 1)],
        },
        {"id": "gate", "type": "human_approval", "message": "go on?"},
        _task("last", "last"),
    ],
}
ACTIONS_PER_RUN = 2 + 2 + 3 + 3 + 2


def _billed_steps(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(tables.billing)).scalar_one()
        )


def _billed_by_run(engine: sa.Engine) -> dict[str, int]:
    billing = tables.billing
    query = sa.select(billing.c.run_id, sa.func.sum(billing.c.cents)).group_by(billing.c.run_id)
    with engine.connect() as conn:
        return {run_id: int(cents) for run_id, cents in conn.execute(query).all()}


def _statuses(engine: sa.Engine, run_ids: list[str]) -> collections.Counter[str]:
    return collections.Counter(store.get_run(engine, run_id)["status"] for run_id in run_ids)


def test_sigkill_during_tasks_parallel_and_approval_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    """After two SIGKILLs (mid-task/parallel, then mid-wait) every run ends right, exactly billed."""
    db_url = database_url(tmp_path)
    data_dir = tmp_path / "data"
    engine = open_database(db_url)
    workflow = parse_workflow(WORKFLOW)
    run_ids = [start_workflow_run(engine, workflow, RunOptions())["id"] for _ in range(RUNS)]
    log = tmp_path / "worker.log"

    worker = start_worker(db_url, data_dir, log)
    # Kill once the runs are inside their first tasks and parallel branches.
    wait_until(lambda: _billed_steps(engine) >= 2 * RUNS, 60)
    kill(worker)
    assert _statuses(engine, run_ids)["running"] > 0

    worker = start_worker(db_url, data_dir, log)
    wait_until(lambda: _statuses(engine, run_ids)["awaiting_human"] == RUNS, 60)
    kill(worker)  # while every run waits: nothing may change
    for run_id in run_ids:
        store.resume_run(engine, run_id, approved=True)

    worker = start_worker(db_url, data_dir, log)
    try:
        wait_until(lambda: _statuses(engine, run_ids)["succeeded"] == RUNS, 60)
    finally:
        kill(worker)

    billed = _billed_by_run(engine)
    restarts = 0
    for run_id in run_ids:
        restarts += check_recovered_run(engine, run_id, data_dir, billed[run_id], ACTIONS_PER_RUN)
    assert restarts > 0, "the first kill should have interrupted tasks in flight"


def test_two_worker_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    """Two workers on one SQLite file split the runs, and one's SIGKILL leaves the rest to the other."""
    db_url = database_url(tmp_path)
    data_dir = tmp_path / "data"
    engine = open_database(db_url)
    no_gate = {**WORKFLOW, "steps": [s for s in WORKFLOW["steps"] if s["id"] != "gate"]}
    workflow = parse_workflow(no_gate)
    run_ids = [start_workflow_run(engine, workflow, RunOptions())["id"] for _ in range(RUNS)]
    log = tmp_path / "worker.log"
    first = start_worker(db_url, data_dir, log)
    second = start_worker(db_url, data_dir, log)
    try:
        wait_until(lambda: _billed_steps(engine) >= 2 * RUNS, 60)
        kill(first)
        wait_until(lambda: _statuses(engine, run_ids)["succeeded"] == RUNS, 60)
    finally:
        kill(second)
    billed = _billed_by_run(engine)
    for run_id in run_ids:
        check_recovered_run(engine, run_id, data_dir, billed[run_id], ACTIONS_PER_RUN)
    assert "database is locked" not in log.read_text()
