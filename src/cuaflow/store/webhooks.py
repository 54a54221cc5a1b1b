"""Queries on the webhook outbox: enqueue, claim, record an attempt, list, redeliver.

A delivery row is written by :func:`enqueue_status_changes` inside the
transaction of :func:`cuaflow.store.writer.apply_units` that changes the run's
status, so the event is announced if and only if the change committed. The
row keeps the exact body that is signed and sent on every attempt, and the
deliverer (:mod:`cuaflow.webhooks.delivery`) claims due rows with a lease, so
that two workers never send the same attempt at once. The rows of one run are
numbered (``seq``) and only the earliest pending one can be claimed: a run's
deliveries arrive in order.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cuaflow.errors import NotFound
from cuaflow.store import tables
from cuaflow.store.database import translate_errors

if TYPE_CHECKING:
    from cuaflow.store.writer import UnitOfWork

ANNOUNCED_STATUSES = frozenset({"awaiting_human", "succeeded", "failed", "cancelled", "timed_out"})
FINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled", "run.timed_out"})
PUBLIC_FIELDS = (
    "id",
    "event",
    "url",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
    "delivered_at",
)

deliveries = tables.webhook_deliveries
runs = tables.runs


def enqueue_status_changes(conn: sa.Connection, units: Sequence[UnitOfWork]) -> None:
    """Add an outbox row for every announced status change in ``units`` (caller's transaction).

    The changes are the ``status`` events the units carry (the engine emits one
    exactly when a run enters a status), so re-entering a wait after a replay
    announces nothing twice. Runs without a ``webhook_url`` are skipped, a run
    announces at most one final status, and a URL that answered 410 for a run
    gets that run's later events as ``stopped`` rows.
    """
    changes = [
        (event.run_id, str(event.data["status"]))
        for unit in units
        for event in unit.events
        if event.type == "status" and event.data.get("status") in ANNOUNCED_STATUSES
    ]
    if not changes:
        return
    run_ids = sorted({run_id for run_id, _ in changes})
    subscribed = {
        row["id"]: row
        for row in conn.execute(
            sa.select(
                runs.c.id,
                runs.c.webhook_url,
                runs.c.workflow_id,
                runs.c.output,
                runs.c.error,
                runs.c.awaiting_step_id,
            ).where(runs.c.id.in_(run_ids), runs.c.webhook_url.is_not(None))
        ).mappings()
    }
    if not subscribed:
        return
    earlier = conn.execute(
        sa.select(deliveries.c.run_id, deliveries.c.seq, deliveries.c.event, deliveries.c.url)
        .where(deliveries.c.run_id.in_(sorted(subscribed)))
        .order_by(deliveries.c.seq)
    ).all()
    last_seq = {row.run_id: row.seq for row in earlier}
    announced = {(row.run_id, row.event) for row in earlier if row.event in FINAL_EVENTS}
    final_runs = {run_id for run_id, _ in announced}
    stopped = {
        (row.run_id, row.url)
        for row in conn.execute(
            sa.select(deliveries.c.run_id, deliveries.c.url).where(
                deliveries.c.run_id.in_(sorted(subscribed)),
                deliveries.c.status == "stopped",
                deliveries.c.last_status_code == 410,
            )
        )
    }
    now = time.time()
    rows = []
    for run_id, status in changes:
        run = subscribed.get(run_id)
        event = f"run.{status}"
        if run is None or run_id in final_runs:
            continue
        if event in FINAL_EVENTS:
            final_runs.add(run_id)
        last_seq[run_id] = last_seq.get(run_id, 0) + 1
        body = {
            "event": event,
            "run_id": run_id,
            "workflow_id": run["workflow_id"],
            "status": status,
            "output": run["output"],
            "error": run["error"],
            "awaiting_step_id": run["awaiting_step_id"] if status == "awaiting_human" else None,
            "created_at": _iso(now),
        }
        gone = (run_id, run["webhook_url"]) in stopped
        rows.append(
            {
                "id": f"whd_{int(now * 1000):012x}{secrets.token_hex(8)}",
                "run_id": run_id,
                "seq": last_seq[run_id],
                "event": event,
                "url": run["webhook_url"],
                "body": json.dumps(body, separators=(",", ":")),
                "status": "stopped" if gone else "pending",
                "retry_started_at": now,
                "next_attempt_at": None if gone else now,
                "last_error": "the URL answered 410 Gone to an earlier delivery" if gone else None,
                "created_at": now,
            }
        )
    if rows:
        conn.execute(deliveries.insert(), rows)


def claim_due(
    engine: sa.Engine, owner: str, limit: int, lease_seconds: float
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due deliveries to ``owner``, each the earliest pending one of its run.

    Returns the rows with the run's ``webhook_secret`` added.
    """
    now = time.time()
    earlier = deliveries.alias("earlier")
    waits_for_earlier = (
        sa.exists()
        .where(
            earlier.c.run_id == deliveries.c.run_id,
            earlier.c.seq < deliveries.c.seq,
            earlier.c.status == "pending",
        )
        .correlate(deliveries)
    )
    due = (
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= now,
            sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
            ~waits_for_earlier,
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=deliveries)
    )
    with translate_errors(), engine.begin() as conn:
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
        )
        claimed = conn.execute(
            sa.select(deliveries, runs.c.webhook_secret)
            .join(runs, runs.c.id == deliveries.c.run_id)
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.next_attempt_at)
        ).mappings()
        return [dict(row) for row in claimed]


def record_attempt(
    engine: sa.Engine,
    delivery_id: str,
    owner: str,
    *,
    status: str,
    status_code: int | None,
    error: str | None,
    next_attempt_at: float | None,
) -> bool:
    """Record an attempt ``owner`` made and what follows it; False if its lease was lost.

    ``status`` ``stopped`` (a 410) also stops the run's later pending deliveries
    to the same URL.
    """
    now = time.time()
    values: dict[str, Any] = {
        "status": status,
        "attempts": deliveries.c.attempts + 1,
        "retry_attempts": deliveries.c.retry_attempts + 1,
        "last_status_code": status_code,
        "last_error": error,
        "last_attempt_at": now,
        "next_attempt_at": next_attempt_at if status == "pending" else None,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if status == "delivered":
        values["delivered_at"] = now
    with translate_errors(), engine.begin() as conn:
        row = conn.execute(
            sa.select(deliveries.c.run_id, deliveries.c.seq, deliveries.c.url).where(
                deliveries.c.id == delivery_id,
                deliveries.c.lease_owner == owner,
                deliveries.c.status == "pending",
            )
        ).first()
        if row is None:
            return False
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(values))
        if status == "stopped":
            conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.run_id == row.run_id,
                    deliveries.c.url == row.url,
                    deliveries.c.seq > row.seq,
                    deliveries.c.status == "pending",
                )
                .values(
                    status="stopped",
                    next_attempt_at=None,
                    last_error=f"the URL answered 410 Gone to delivery {delivery_id}",
                )
            )
    return True


def list_deliveries(
    engine: sa.Engine, run_id: str, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    """The run's deliveries, oldest first, in their public shape; ``NotFound`` for no such run."""
    with translate_errors(), engine.connect() as conn:
        _check_run(conn, run_id, tenant_id)
        rows = conn.execute(
            sa.select(deliveries).where(deliveries.c.run_id == run_id).order_by(deliveries.c.seq)
        ).mappings()
        return [_public(row) for row in rows]


def redeliver(
    engine: sa.Engine, run_id: str, delivery_id: str, tenant_id: str | None = None
) -> dict[str, Any]:
    """Send a delivery again as soon as possible, with a fresh retry schedule; return it.

    Works in any status (a delivered, failed or stopped one is pending again);
    the body and ``webhook-id`` stay the same. ``NotFound`` if the run or the
    delivery does not exist.
    """
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        _check_run(conn, run_id, tenant_id)
        where = (deliveries.c.id == delivery_id, deliveries.c.run_id == run_id)
        updated = conn.execute(
            deliveries.update()
            .where(*where)
            .values(
                status="pending",
                next_attempt_at=now,
                retry_started_at=now,
                retry_attempts=0,
            )
        )
        if updated.rowcount == 0:
            raise NotFound(f"run '{run_id}' has no webhook delivery '{delivery_id}'")
        row = conn.execute(sa.select(deliveries).where(*where)).mappings().one()
        return _public(row)


def _check_run(conn: sa.Connection, run_id: str, tenant_id: str | None) -> None:
    query = sa.select(runs.c.id).where(runs.c.id == run_id)
    if tenant_id is not None:
        query = query.where(runs.c.tenant_id == tenant_id)
    if conn.execute(query).first() is None:
        raise NotFound(f"no run with id '{run_id}'")


def _public(row: Any) -> dict[str, Any]:
    return {field: row[field] for field in PUBLIC_FIELDS}


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
