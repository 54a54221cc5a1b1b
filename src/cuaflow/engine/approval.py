"""The ``human_approval`` step: suspend the run until a person answers.

A waiting run holds nothing: the step journals a ``started`` entry, the run
row turns ``awaiting_human`` with no lease and no claim time, and the worker
forgets it. An answer (:func:`cuaflow.store.runs.resume_run`) or a timer makes
the run claimable again; replay reaches this step, finds the answer (or that
the timeout passed), and continues.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cuaflow.dsl import models as m
from cuaflow.engine.outcomes import RunEnded, StepFailed, Suspended
from cuaflow.store.writer import Event, UnitOfWork

if TYPE_CHECKING:
    from cuaflow.engine.interpreter import Interpreter, Scope


async def run_approval(
    interp: Interpreter, step: m.HumanApprovalStep, path: str, scope: Scope
) -> None:
    """Take the answer given to this approval, or suspend the run to wait for one."""
    state = interp.state
    signal = state.signals.get(path)
    entry = state.journal.get(path)
    now = time.time()
    if signal is not None:
        approved = bool(signal.get("approved", True))
        binding = {
            "approved": approved,
            "note": signal.get("note"),
            "decided_at": signal.get("decided_at", now),
        }
        if approved:
            interp.complete(step, path, binding)
            return
        reason = f": {binding['note']}" if binding["note"] else ""
        _fail(interp, step, path, binding, "APPROVAL_REJECTED", f"approval was rejected{reason}")
    timeout = step.timeout_seconds or state.params.get("awaiting_human_timeout_seconds")
    started_at = float(entry["created_at"]) if entry is not None else now
    if timeout is not None and now >= started_at + timeout:
        binding = {"approved": False, "note": None, "decided_at": now}
        _fail(interp, step, path, binding, "APPROVAL_TIMEOUT", f"no answer within {timeout} s")
    message = str(interp.render(step.message, scope, step.id))
    policy = state.params.get("on_awaiting_human") or "pause"
    if policy != "pause":
        raise RunEnded(
            "failed" if policy == "fail" else "cancelled",
            error={
                "code": "HUMAN_APPROVAL_REQUIRED" if policy == "fail" else "CANCELLED",
                "message": f"step '{step.id}' needs a human and on_awaiting_human is '{policy}'",
                "step_id": step.id,
            },
        )
    await _suspend(interp, step, path, message, started_at, timeout, first=entry is None)


def _fail(
    interp: Interpreter,
    step: m.HumanApprovalStep,
    path: str,
    binding: dict[str, Any],
    code: str,
    message: str,
) -> None:
    error = {"code": code, "message": f"step '{step.id}': {message}", "step_id": step.id}
    interp.complete(step, path, binding, error=error)
    raise StepFailed(code, error["message"], step.id)


async def _suspend(
    interp: Interpreter,
    step: m.HumanApprovalStep,
    path: str,
    message: str,
    started_at: float,
    timeout: int | None,
    *,
    first: bool,
) -> None:
    state = interp.state
    run_id = state.run_id
    unit = UnitOfWork()
    if first:
        state.journal[path] = {"state": "started", "created_at": started_at, "result": {}}
        unit.journal.append(
            {
                "run_id": run_id,
                "path": path,
                "step_id": step.id,
                "step_type": step.type,
                "state": "started",
                "result": {"message": message},
            }
        )
        waiting = {"step_id": step.id, "path": path, "message": message}
        unit.events.append(Event(run_id, "awaiting_human", waiting, step_id=step.id))
        unit.events.append(Event(run_id, "status", {"status": "awaiting_human"}))
    if timeout is not None:
        unit.cancel_timers.append((run_id, "approval_timeout"))
        unit.new_timers.append(
            {"run_id": run_id, "kind": "approval_timeout", "due_at": started_at + timeout}
        )
    unit.update_run(
        run_id,
        status="awaiting_human",
        current_step_id=step.id,
        awaiting_step_id=step.id,
        awaiting_human_reason=message,
        awaiting_human_since=started_at,
        runnable_at=None,
        lease_owner=None,
        lease_expires_at=None,
        iterations_used=state.iterations,
    )
    state.submit(unit)
    await state.flush()
    raise Suspended(step.id)
