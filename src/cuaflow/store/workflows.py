"""Saved workflows and their versions.

A workflow is an id (``wf_...``) with numbered versions 1, 2, 3 ... in one
table keyed by ``(id, version)``. Saving never changes an earlier version: it
inserts the next one, so a run that pinned version 2 keeps reading exactly what
it started with. Within a tenant a slug names one workflow, and saving under an
existing slug adds a version to it. ``status`` (``active`` or ``archived``)
belongs to the workflow as a whole and is kept equal on all its rows.

Rows come back as plain dicts with the table's column names.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from cuaflow.errors import InvalidState, NotFound
from cuaflow.store import tables
from cuaflow.store.database import translate_errors
from cuaflow.store.runs import new_id

_wf = tables.workflows


@dataclass(frozen=True)
class WorkflowValues:
    """What one saved version holds (everything except its id and number)."""

    name: str
    slug: str
    version_label: str | None
    dsl_version: str
    definition: dict[str, Any]
    inputs_schema: dict[str, Any] | None
    description: str | None
    metadata: dict[str, Any] | None


def save_by_slug(engine: sa.Engine, tenant_id: str, values: WorkflowValues) -> dict[str, Any]:
    """Add a version to the tenant's workflow with this slug, or create it as version 1."""
    with translate_errors(), engine.begin() as conn:
        existing = conn.execute(
            sa.select(_wf.c.id)
            .where(_wf.c.tenant_id == tenant_id, _wf.c.slug == values.slug)
            .limit(1)
        ).scalar()
        if existing is None:
            return _insert(conn, tenant_id, new_id("wf_"), 1, values, created_at=None)
        return _insert_next(conn, tenant_id, str(existing), values)


def save_new_version(
    engine: sa.Engine, tenant_id: str, workflow_id: str, values: WorkflowValues
) -> dict[str, Any]:
    """Add the next version of an existing workflow.

    Raises ``NotFound`` when the tenant has no such workflow and
    ``InvalidState`` (code ``SLUG_CONFLICT``) when the new slug names another one.
    """
    with translate_errors(), engine.begin() as conn:
        other = conn.execute(
            sa.select(_wf.c.id)
            .where(_wf.c.tenant_id == tenant_id, _wf.c.slug == values.slug, _wf.c.id != workflow_id)
            .limit(1)
        ).scalar()
        if other is not None:
            raise InvalidState(
                f"the slug '{values.slug}' already names workflow '{other}'", code="SLUG_CONFLICT"
            )
        return _insert_next(conn, tenant_id, workflow_id, values)


def get_workflow(
    engine: sa.Engine, tenant_id: str, workflow_id: str, version: int | None = None
) -> dict[str, Any]:
    """The latest version of a workflow, or the given one; ``NotFound`` if absent."""
    query = sa.select(_wf).where(_wf.c.tenant_id == tenant_id, _wf.c.id == workflow_id)
    if version is None:
        query = query.order_by(_wf.c.version.desc()).limit(1)
    else:
        query = query.where(_wf.c.version == version)
    with translate_errors(), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        which = f" version {version}" if version is not None else ""
        raise NotFound(f"no workflow with id '{workflow_id}'{which}")
    return _plain(row)


def list_workflows(
    engine: sa.Engine,
    tenant_id: str,
    *,
    limit: int,
    starting_after: str | None = None,
    status: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The latest version of each workflow, newest workflow first; and whether more follow.

    ``starting_after`` is a workflow id from an earlier page; ``NotFound`` if
    the tenant has no such workflow.
    """
    inner = _wf.alias("later")
    newest_version = (
        sa.select(sa.func.max(inner.c.version)).where(inner.c.id == _wf.c.id).scalar_subquery()
    )
    query = sa.select(_wf).where(_wf.c.tenant_id == tenant_id, _wf.c.version == newest_version)
    if status is not None:
        query = query.where(_wf.c.status == status)
    with translate_errors(), engine.connect() as conn:
        if starting_after is not None:
            first = conn.execute(
                sa.select(_wf.c.created_at)
                .where(_wf.c.tenant_id == tenant_id, _wf.c.id == starting_after)
                .limit(1)
            ).scalar()
            if first is None:
                raise NotFound(f"no workflow with id '{starting_after}'")
            query = query.where(
                sa.or_(
                    _wf.c.created_at < first,
                    sa.and_(_wf.c.created_at == first, _wf.c.id < starting_after),
                )
            )
        query = query.order_by(_wf.c.created_at.desc(), _wf.c.id.desc()).limit(limit + 1)
        rows = [_plain(row) for row in conn.execute(query).mappings()]
    return rows[:limit], len(rows) > limit


def set_status(engine: sa.Engine, tenant_id: str, workflow_id: str, status: str) -> dict[str, Any]:
    """Set the status of every version; return the latest. ``NotFound`` if absent."""
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        changed = conn.execute(
            _wf.update()
            .where(_wf.c.tenant_id == tenant_id, _wf.c.id == workflow_id)
            .values(status=status, updated_at=now)
        ).rowcount
    if not changed:
        raise NotFound(f"no workflow with id '{workflow_id}'")
    return get_workflow(engine, tenant_id, workflow_id)


def _insert_next(
    conn: sa.Connection, tenant_id: str, workflow_id: str, values: WorkflowValues
) -> dict[str, Any]:
    current = (
        conn.execute(
            sa.select(_wf.c.version, _wf.c.created_at)
            .where(_wf.c.tenant_id == tenant_id, _wf.c.id == workflow_id)
            .order_by(_wf.c.version.desc())
            .limit(1)
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if current is None:
        raise NotFound(f"no workflow with id '{workflow_id}'")
    # Saving a version is using the workflow again: an archived one becomes active.
    conn.execute(
        _wf.update()
        .where(_wf.c.tenant_id == tenant_id, _wf.c.id == workflow_id)
        .values(status="active")
    )
    return _insert(
        conn,
        tenant_id,
        workflow_id,
        int(current["version"]) + 1,
        values,
        created_at=float(current["created_at"]),
    )


def _insert(
    conn: sa.Connection,
    tenant_id: str,
    workflow_id: str,
    version: int,
    values: WorkflowValues,
    *,
    created_at: float | None,
) -> dict[str, Any]:
    now = time.time()
    fields = asdict(values)
    row = {
        "id": workflow_id,
        "version": version,
        "tenant_id": tenant_id,
        "status": "active",
        "created_at": created_at if created_at is not None else now,
        "updated_at": now,
        **fields,
    }
    insert = {key: value for key, value in row.items() if key != "metadata"}
    conn.execute(_wf.insert().values(insert | {"metadata_": fields["metadata"]}))
    return row


def _plain(row: sa.RowMapping) -> dict[str, Any]:
    # Result rows name the column "metadata"; only statements use its key "metadata_".
    return dict(row)
