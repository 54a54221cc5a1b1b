"""Queries on runs: create, read, claim with a lease, resume, cancel, fire timers.

All SQL about runs lives here and in :mod:`cuaflow.store.writer`; the engine,
worker, CLI and API call these functions and never write SQL themselves.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import sqlalchemy as sa

from cuaflow.errors import InvalidState, NotFound
from cuaflow.store import tables
from cuaflow.store.database import translate_errors
from cuaflow.store.notify import notify_runs_ready
from cuaflow.store.writer import Event, UnitOfWork, apply_units

FINISHED = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
runs = tables.runs


def new_id(prefix: str) -> str:
    """A unique id that sorts by creation time (milliseconds, then randomness)."""
    return f"{prefix}{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


def insert_run(engine: sa.Engine, row: dict[str, Any], unit: UnitOfWork | None = None) -> None:
    """Insert a new run row (and whatever else ``unit`` carries) in one transaction."""
    unit = unit or UnitOfWork()
    unit.new_runs.insert(0, row)
    with translate_errors(), engine.begin() as conn:
        apply_units(conn, [unit])


def get_run(engine: sa.Engine, run_id: str, tenant_id: str | None = None) -> dict[str, Any]:
    """One run row as a dict; ``NotFound`` if it does not exist (in this tenant)."""
    query = sa.select(runs).where(runs.c.id == run_id)
    if tenant_id is not None:
        query = query.where(runs.c.tenant_id == tenant_id)
    with translate_errors(), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no run with id '{run_id}'")
    return dict(row)


def claim_runs(engine: sa.Engine, owner: str, limit: int, lease_seconds: float) -> list[str]:
    """Lease up to ``limit`` runnable runs to ``owner``; return their ids."""
    now = time.time()
    claimable = (
        sa.select(runs.c.id)
        .where(
            runs.c.runnable_at.is_not(None),
            runs.c.runnable_at <= now,
            # An awaiting run becomes runnable when one of its timers fires.
            runs.c.status.in_(("queued", "running", "awaiting_human")),
            sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now),
        )
        .order_by(runs.c.runnable_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with translate_errors(), engine.begin() as conn:
        ids = list(conn.execute(claimable).scalars())
        if ids:
            conn.execute(
                runs.update()
                .where(runs.c.id.in_(ids))
                .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
            )
    return ids


def renew_leases(
    engine: sa.Engine, owner: str, run_ids: list[str], lease_seconds: float
) -> tuple[set[str], set[str]]:
    """Extend ``owner``'s leases; return (ids whose cancel was requested, ids it lost)."""
    if not run_ids:
        return set(), set()
    with translate_errors(), engine.begin() as conn:
        # Locked in id order, like every transaction that locks several runs.
        rows = conn.execute(
            sa.select(runs.c.id, runs.c.lease_owner, runs.c.cancel_requested)
            .where(runs.c.id.in_(run_ids))
            .order_by(runs.c.id)
            .with_for_update()
        ).all()
        mine = [row.id for row in rows if row.lease_owner == owner]
        if mine:
            conn.execute(
                runs.update()
                .where(runs.c.id.in_(mine))
                .values(lease_expires_at=time.time() + lease_seconds)
            )
    cancelled = {row.id for row in rows if row.cancel_requested}
    # A run this worker just suspended or finished has no owner: it is not lost.
    lost = {row.id for row in rows if row.lease_owner not in (owner, None)}
    return cancelled, lost


def load_journal(engine: sa.Engine, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's journal: step path -> row (state, result, created_at)."""
    query = sa.select(tables.journal).where(tables.journal.c.run_id == run_id)
    with translate_errors(), engine.connect() as conn:
        return {row["path"]: dict(row) for row in conn.execute(query).mappings()}


def load_signals(engine: sa.Engine, run_id: str) -> dict[str, dict[str, Any]]:
    """The answers given to the run's approvals: step path -> payload."""
    query = (
        sa.select(tables.signals)
        .where(tables.signals.c.run_id == run_id)
        .order_by(tables.signals.c.id)
    )
    with translate_errors(), engine.connect() as conn:
        return {row["path"]: dict(row["payload"]) for row in conn.execute(query).mappings()}


def _locked_run(conn: sa.Connection, run_id: str, tenant_id: str | None) -> Any:
    """The run's row, locked for this transaction; ``NotFound`` if not in the tenant."""
    query = sa.select(runs).where(runs.c.id == run_id).with_for_update()
    if tenant_id is not None:
        query = query.where(runs.c.tenant_id == tenant_id)
    run = conn.execute(query).mappings().first()
    if run is None:
        raise NotFound(f"no run with id '{run_id}'")
    return run


def resume_run(
    engine: sa.Engine,
    run_id: str,
    *,
    approved: bool = True,
    note: str | None = None,
    tenant_id: str | None = None,
) -> None:
    """Answer the approval a run waits for and make it claimable again.

    Raises ``InvalidState`` (code ``NOT_AWAITING_HUMAN``) unless the run is
    awaiting a human; of two concurrent resumes exactly one succeeds.
    """
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        run = _locked_run(conn, run_id, tenant_id)
        if run["status"] != "awaiting_human":
            raise InvalidState(
                f"run '{run_id}' is {run['status']}, not awaiting_human", code="NOT_AWAITING_HUMAN"
            )
        waiting = conn.execute(
            sa.select(tables.journal.c.path).where(
                tables.journal.c.run_id == run_id,
                tables.journal.c.step_type == "human_approval",
                tables.journal.c.state == "started",
            )
        ).scalar()
        payload = {"approved": approved, "note": note, "decided_at": now}
        conn.execute(
            tables.signals.insert().values(
                run_id=run_id, path=waiting or "", kind="approval", payload=payload, created_at=now
            )
        )
        unit = UnitOfWork(
            events=[Event(run_id, "resumed", {"approved": approved, "note": note})],
            cancel_timers=[(run_id, "approval_timeout")],
        )
        unit.update_run(
            run_id,
            status="running",
            runnable_at=now,
            awaiting_step_id=None,
            awaiting_human_reason=None,
            awaiting_human_since=None,
        )
        apply_units(conn, [unit])


def request_cancel(engine: sa.Engine, run_id: str, tenant_id: str | None = None) -> str:
    """Cancel a run: at once if no worker holds it, else by asking its worker.

    Returns the run's status after the call (``cancelled`` or still ``running``
    until its worker stops it, within about a second).
    """
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        run = _locked_run(conn, run_id, tenant_id)
        if run["status"] in FINISHED:
            raise InvalidState(f"run '{run_id}' already finished as {run['status']}")
        held = run["lease_owner"] is not None and (run["lease_expires_at"] or 0) > now
        if held:
            conn.execute(runs.update().where(runs.c.id == run_id).values(cancel_requested=True))
            return str(run["status"])
        unit = finish_unit(
            run_id, "cancelled", error={"code": "CANCELLED", "message": "cancelled by request"}
        )
        unit.update_run(run_id, cancel_requested=True)
        apply_units(conn, [unit])
        return "cancelled"


def finish_unit(
    run_id: str,
    status: str,
    *,
    output: Any = None,
    error: dict[str, Any] | None = None,
    unit: UnitOfWork | None = None,
) -> UnitOfWork:
    """The writes that end a run: final status, its events, no lease, no timers."""
    unit = unit or UnitOfWork()
    now = time.time()
    unit.update_run(
        run_id,
        status=status,
        output=output,
        error=error,
        finished_at=now,
        runnable_at=None,
        lease_owner=None,
        lease_expires_at=None,
        awaiting_step_id=None,
        current_step_id=None,
    )
    unit.events.append(Event(run_id, "status", {"status": status, "error": error}))
    unit.events.append(Event(run_id, "done", {"status": status, "output": output, "error": error}))
    for kind in ("deadline", "approval_timeout", "wake"):
        unit.cancel_timers.append((run_id, kind))
    return unit


def fire_due_timers(engine: sa.Engine, limit: int = 500) -> list[str]:
    """Make the runs of due timers claimable again; return their ids.

    A fired deadline or approval timeout does not decide anything itself: the
    run is replayed and the interpreter sees that the time has passed.

    Several workers may sweep at once and each timer still fires once: a
    sweep deletes a run's timers only while it holds the run's row lock. It
    takes the run locks first, as writers do (so the two never deadlock), and
    skips runs another transaction holds; their timers fire at a later sweep.
    """
    now = time.time()
    timers = tables.timers
    with translate_errors(), engine.begin() as conn:
        due_runs = sorted(
            set(
                conn.execute(
                    sa.select(timers.c.run_id)
                    .where(timers.c.due_at <= now)
                    .order_by(timers.c.due_at)
                    .limit(limit)
                ).scalars()
            )
        )
        if not due_runs:
            return []
        held = list(
            conn.execute(
                sa.select(runs.c.id)
                .where(runs.c.id.in_(due_runs))
                .order_by(runs.c.id)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        # Read again under the locks: a sweep that committed meanwhile took its timers.
        fired = conn.execute(
            sa.select(timers.c.id, timers.c.run_id).where(
                timers.c.run_id.in_(held), timers.c.due_at <= now
            )
        ).all()
        if not fired:
            return []
        conn.execute(timers.delete().where(timers.c.id.in_([row.id for row in fired])))
        run_ids = sorted({row.run_id for row in fired})
        conn.execute(
            runs.update()
            .where(
                runs.c.id.in_(run_ids), runs.c.status.in_(("awaiting_human", "running", "queued"))
            )
            .values(runnable_at=now)
        )
        notify_runs_ready(conn, run_ids)
    return run_ids


def events_after(
    engine: sa.Engine, run_id: str, after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """The run's events with ``seq`` greater than ``after``, oldest first."""
    events = tables.events
    query = (
        sa.select(events)
        .where(events.c.run_id == run_id, events.c.seq > after)
        .order_by(events.c.seq)
        .limit(limit)
    )
    with translate_errors(), engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
