"""Three worker processes on one PostgreSQL database; one is SIGKILLed while many runs are under way."""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store import tables
from cuaflow.store.database import open_database
from tests.processes import check_recovered_run, kill, start_worker, wait_until

pytestmark = pytest.mark.slow

RUNS = 30
PER_WORKER = 6  # fewer slots than runs, so every worker gets some and later waves wait


def _act(path: str) -> dict[str, Any]:
    # Every performed action leaves one line in the run's side-effect log.
    return {"type": "bash", "command": f"sleep 0.1; echo '{path}' >> effects.log"}


def _task(step_id: str, path: str, actions: int = 2) -> dict[str, Any]:
    actions_list = [_act(f"{path}:{i}") for i in range(actions)]
    return {"id": step_id, "type": "task", "task": step_id, "actions": actions_list}


WORKFLOW = {
    "name": "three-workers",
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
            "count": 2,
            "body": [_task("inner", "inner-{{vars.iteration}}", 1)],
        },
        _task("last", "last"),
    ],
}
ACTIONS_PER_RUN = 2 + 2 + 3 + 2 + 2


def _owners(engine: sa.Engine) -> collections.Counter[str]:
    runs = tables.runs
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(runs.c.lease_owner).where(
                runs.c.kind == "workflow",
                runs.c.status == "running",
                runs.c.lease_owner.is_not(None),
            )
        ).scalars()
        return collections.Counter(str(owner) for owner in rows)


def _finished(engine: sa.Engine) -> int:
    runs = tables.runs
    with engine.connect() as conn:
        # Task steps' task runs are runs too; count the workflow runs.
        query = sa.select(sa.func.count()).where(
            runs.c.kind == "workflow", runs.c.status == "succeeded"
        )
        return int(conn.execute(query).scalar_one())


def _pid_of(owner: str) -> int:
    # Owners are "<host>:<pid>:<random>".
    return int(owner.split(":")[1])


def test_three_workers_finish_every_run_after_one_is_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    """With one of three workers SIGKILLed mid-run, the others finish all runs: no step twice, exact bills."""
    engine = open_database(postgres_url)
    workflow = parse_workflow(WORKFLOW)
    run_ids = [str(start_workflow_run(engine, workflow, RunOptions())["id"]) for _ in range(RUNS)]
    data_dir = tmp_path / "data"
    log = tmp_path / "workers.log"
    workers = [start_worker(postgres_url, data_dir, log, concurrency=PER_WORKER) for _ in range(3)]
    by_pid: dict[int, subprocess.Popen[bytes]] = {worker.pid: worker for worker in workers}
    try:
        # Kill a worker once every worker holds runs, some of them inside a task.
        wait_until(lambda: len({_pid_of(o) for o in _owners(engine)}) == 3, 30, "all workers busy")
        wait_until((tmp_path / "data" / "runs").exists, 10, "first effects")
        victim_owner, held = _owners(engine).most_common(1)[0]
        victim = by_pid[_pid_of(victim_owner)]
        kill(victim)
        assert held > 0
        orphaned = [
            run_id
            for run_id in run_ids
            if store.get_run(engine, run_id)["lease_owner"] == victim_owner
        ]
        assert orphaned, "the killed worker held no run"
        wait_until(lambda: _finished(engine) == RUNS, 60, "every run to succeed")
    finally:
        for worker in workers:
            kill(worker)

    with engine.connect() as conn:
        billed: dict[str, int] = {
            str(run_id): int(cents)
            for run_id, cents in conn.execute(
                sa.select(tables.billing.c.run_id, sa.func.sum(tables.billing.c.cents)).group_by(
                    tables.billing.c.run_id
                )
            )
        }
    restarts = 0
    for run_id in run_ids:
        assert store.get_run(engine, run_id)["status"] == "succeeded"
        restarts += check_recovered_run(engine, run_id, data_dir, billed[run_id], ACTIONS_PER_RUN)
    assert restarts > 0, "the kill should have interrupted tasks in flight"
    assert "Traceback" not in log.read_text()
