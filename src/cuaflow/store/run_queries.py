"""Read-only queries on runs that the HTTP API needs in bulk.

Listing runs page by page, the step bindings of many runs at once, and the
event positions and new events of many runs in one round trip (what live
event streams poll and read). Writes to runs stay in :mod:`cuaflow.store.runs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from cuaflow.errors import NotFound
from cuaflow.store import tables
from cuaflow.store.database import translate_errors

# SQLite allows at most 32766 bound values per statement (999 before 3.32).
_CHUNK = 900
_runs = tables.runs


def list_runs(
    engine: sa.Engine,
    tenant_id: str,
    *,
    limit: int,
    starting_after: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    workflow_id: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Runs of a tenant, newest first, filtered; and whether more follow.

    ``starting_after`` is a run id from an earlier page; ``NotFound`` if the
    tenant has no such run.
    """
    query = sa.select(_runs).where(_runs.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(_runs.c.status == status)
    if kind is not None:
        query = query.where(_runs.c.kind == kind)
    if workflow_id is not None:
        query = query.where(_runs.c.workflow_id == workflow_id)
    with translate_errors(), engine.connect() as conn:
        if starting_after is not None:
            created = conn.execute(
                sa.select(_runs.c.created_at).where(
                    _runs.c.tenant_id == tenant_id, _runs.c.id == starting_after
                )
            ).scalar()
            if created is None:
                raise NotFound(f"no run with id '{starting_after}'")
            query = query.where(
                sa.or_(
                    _runs.c.created_at < created,
                    sa.and_(_runs.c.created_at == created, _runs.c.id < starting_after),
                )
            )
        query = query.order_by(_runs.c.created_at.desc(), _runs.c.id.desc()).limit(limit + 1)
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return rows[:limit], len(rows) > limit


def step_bindings(engine: sa.Engine, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each run, its completed steps: step id -> binding (the latest instance's)."""
    journal = tables.journal
    found: dict[str, dict[str, Any]] = {run_id: {} for run_id in run_ids}
    with translate_errors(), engine.connect() as conn:
        for chunk in _chunks(run_ids):
            query = (
                sa.select(journal.c.run_id, journal.c.step_id, journal.c.result)
                .where(journal.c.run_id.in_(chunk), journal.c.state == "completed")
                .order_by(journal.c.created_at)
            )
            for run_id, step_id, result in conn.execute(query):
                binding = result.get("binding") if isinstance(result, dict) else None
                found[run_id][step_id] = binding
    return found


def last_seqs(engine: sa.Engine, run_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
    """For each existing run: (the seq of its newest event, its status)."""
    found: dict[str, tuple[int, str]] = {}
    with translate_errors(), engine.connect() as conn:
        for chunk in _chunks(list(run_ids)):
            query = sa.select(_runs.c.id, _runs.c.last_seq, _runs.c.status).where(
                _runs.c.id.in_(chunk)
            )
            for run_id, seq, status in conn.execute(query):
                found[run_id] = (int(seq), str(status))
    return found


def events_after_many(
    engine: sa.Engine, cursors: Sequence[tuple[str, int]], limit: int
) -> list[list[dict[str, Any]]]:
    """For each (run id, seq), up to ``limit`` events of that run after that seq, oldest first.

    One connection serves every cursor, so many streams woken by one commit
    cost one round trip to a thread rather than one each.
    """
    events = tables.events
    query = (
        sa.select(events)
        .where(events.c.run_id == sa.bindparam("run"), events.c.seq > sa.bindparam("after"))
        .order_by(events.c.seq)
        .limit(limit)
    )
    with translate_errors(), engine.connect() as conn:
        return [
            [dict(row) for row in conn.execute(query, {"run": run, "after": after}).mappings()]
            for run, after in cursors
        ]


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
