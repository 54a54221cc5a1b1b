"""Drive one claimed run: rebuild its state, interpret it, record how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cuaflow.dsl.models import Workflow
from cuaflow.engine.interpreter import Interpreter
from cuaflow.engine.machine_pool import MachinePool
from cuaflow.engine.outcomes import RunEnded, StepFailed, Suspended
from cuaflow.engine.run_state import RunState, deadline_error
from cuaflow.engine.task_step import LOCAL_TERMINAL
from cuaflow.errors import StoreError
from cuaflow.machines.terminal import TerminalMachine
from cuaflow.store import runs as store
from cuaflow.store.secrets import load_secrets
from cuaflow.store.writer import Event, UnitOfWork, Writer

log = logging.getLogger(__name__)


async def drive_run(
    engine: sa.Engine,
    writer: Writer,
    run_id: str,
    *,
    data_dir: Path,
    pool: MachinePool | None = None,
    reader: sa.Engine | None = None,
    cancel_requested: Callable[[], bool] = lambda: False,
) -> str:
    """Execute a claimed run until it finishes or waits; return what happened.

    Returns ``"finished"``, ``"suspended"`` or ``"released"`` (the run was not
    in a state to execute, or the store failed and another claim will retry).
    ``reader`` is the engine to load the run with (see
    :mod:`cuaflow.store.read_engine`); ``engine`` by default.
    """
    try:
        run, journal, signals, secrets = await asyncio.to_thread(_load, reader or engine, run_id)
        if run["status"] in store.FINISHED:
            return "released"
    except StoreError:
        log.exception("could not load run %s; its lease will lapse and it will be retried", run_id)
        return "released"
    state = RunState(
        run=run,
        workflow=_workflow_of(run),
        journal=journal,
        signals=signals,
        writer=writer,
        workdir=data_dir / "runs" / run_id,
        pool=pool or MachinePool(engine, data_dir),
        secrets=secrets,
    )
    if run["cancel_requested"]:
        return await _finish(state, RunEnded("cancelled", error=_cancelled()))
    _mark_started(state)
    try:
        state.check_deadline()
        async with asyncio.timeout(_seconds_left(state)):
            await Interpreter(state).execute()
    except RunEnded as end:
        return await _finish(state, _task_run_end(state, end))
    except StepFailed as failure:
        return await _finish(state, RunEnded("failed", error=failure.as_error()))
    except Suspended:
        await _release_machines(state, finished=False)
        return "suspended"
    except TimeoutError:
        error = deadline_error(state.guards, state.current_step_id)
        return await _finish(state, RunEnded("timed_out", error=error))
    except asyncio.CancelledError:
        if not cancel_requested():
            raise  # shutting down or the lease was lost: another claim replays the run
        return await _finish(state, RunEnded("cancelled", error=_cancelled()))
    except StoreError:
        log.exception("store failed while running %s; it will be retried", run_id)
        await _release_machines(state, finished=False)
        return "released"
    except Exception as exc:
        log.exception("run %s failed on an internal error", run_id)
        error = {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}
        return await _finish(state, RunEnded("failed", error=error))
    return "finished"  # pragma: no cover  # execute() always ends by raising


def _load(
    engine: sa.Engine, run_id: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, str]]:
    # One thread hop for everything a claimed run needs before it can execute.
    # A run that never started has no journal and no answers yet: two queries saved.
    run = store.get_run(engine, run_id)
    fresh = run["started_at"] is None
    return (
        run,
        {} if fresh else store.load_journal(engine, run_id),
        {} if fresh else store.load_signals(engine, run_id),
        load_secrets(engine, run["tenant_id"]),
    )


@functools.lru_cache(maxsize=256)
def _saved_workflow(workflow_id: str, version: int, definition: str) -> Workflow:
    # Saved versions never change; runs of one version share their parsed definition.
    return Workflow.model_validate_json(definition)


def _workflow_of(run: dict[str, Any]) -> Workflow:
    if run["workflow_id"] and run["workflow_version"] and run["kind"] == "workflow":
        return _saved_workflow(
            run["workflow_id"], run["workflow_version"], json.dumps(run["definition"])
        )
    return Workflow.model_validate(run["definition"])


def _task_run_end(state: RunState, end: RunEnded) -> RunEnded:
    """A standalone task run ends as its task did, not as a workflow that completed."""
    binding = state.bindings.get("task")
    if state.run["kind"] != "task" or end.status != "succeeded" or binding is None:
        return end
    return RunEnded(binding["status"], output=binding["output"], error=binding["error"])


def _cancelled() -> dict[str, Any]:
    return {"code": "CANCELLED", "message": "cancelled by request"}


def _mark_started(state: RunState) -> None:
    run = state.run
    now = time.time()
    unit = UnitOfWork()
    if run["started_at"] is None:
        values: dict[str, Any] = {"status": "running", "started_at": now}
        deadline = state.guards.get("deadline_seconds")
        if deadline is not None:
            values["deadline_at"] = run["deadline_at"] = now + deadline
            unit.new_timers.append(
                {"run_id": state.run_id, "kind": "deadline", "due_at": now + deadline}
            )
        unit.update_run(state.run_id, **values)
        unit.events.append(Event(state.run_id, "status", {"status": "running"}))
        state.submit(unit)
    elif run["status"] != "running":
        unit.update_run(state.run_id, status="running")
        state.submit(unit)


def _seconds_left(state: RunState) -> float | None:
    deadline_at = state.run.get("deadline_at")
    return None if deadline_at is None else max(0.0, deadline_at - time.time())


async def _finish(state: RunState, end: RunEnded) -> str:
    # Machines first: once a run's final status is visible, it holds nothing.
    await _release_machines(state, finished=True)
    unit = store.finish_unit(state.run_id, end.status, output=end.output, error=end.error)
    unit.update_run(state.run_id, iterations_used=state.iterations)
    task = state.bindings.get("task")
    if state.run["kind"] == "task" and task is not None:
        unit.update_run(state.run_id, result=task["result"])
    state.submit(unit)
    try:
        await state.flush()
    except StoreError:
        log.exception("could not record the end of run %s; it will be retried", state.run_id)
        return "released"
    return "finished"


async def _release_machines(state: RunState, *, finished: bool) -> None:
    """Close the machines this execution of the run built.

    A run that waits (or moves to another worker) keeps the processes its
    terminal commands started, which later steps may still need; everything
    else (browsers, ssh sessions) is closed. A finished run's terminal is
    closed too, even when this process never used it: processes the run
    started before it waited or moved are listed on disk.
    """
    machines = dict(state.machines)
    if finished:
        machines.setdefault(LOCAL_TERMINAL, TerminalMachine(LOCAL_TERMINAL, state.workdir))
    for machine in machines.values():
        if finished or machine.kind != "terminal":
            with contextlib.suppress(Exception):
                await machine.close()
