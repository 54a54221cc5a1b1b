"""Stored rows to the objects the API answers with: ``workflow``, ``workflow.run``, ``agent.run``.

Timestamps are ISO-8601 UTC strings with second precision and a ``Z``
(``2026-06-01T12:00:00Z``), the shape the hosted reference answers with; the
store keeps epoch seconds. Every object carries ``request_id``, the id of the
request that produced the answer. ``webhook_secret`` is a key of every run
object but holds the secret only in the answer to the request that created the
run (and its idempotent replays); elsewhere it is ``null``.
"""

from __future__ import annotations

import re
import time
from typing import Any

_PATH_DECORATION = re.compile(r"(\[\d+\]|#\d+)$")


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ`` (None stays None)."""
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def workflow_object(row: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A saved workflow version as the ``workflow`` object."""
    document: dict[str, Any] = row["definition"]
    definition: dict[str, Any] = {"steps": document.get("steps", [])}
    if "output" in document:
        definition["output"] = document["output"]
    if document.get("guards"):
        definition["guards"] = document["guards"]
    return {
        "id": row["id"],
        "object": "workflow",
        "name": row["name"],
        "slug": row["slug"],
        "version": row["version"],
        "version_label": row["version_label"],
        "dsl_version": row["dsl_version"],
        "definition": definition,
        "inputs_schema": row["inputs_schema"],
        "description": row["description"],
        "status": row["status"],
        "metadata": _metadata(row),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "request_id": request_id,
    }


def run_object(
    row: dict[str, Any],
    request_id: str,
    *,
    steps: dict[str, Any] | None = None,
    created: bool = False,
) -> dict[str, Any]:
    """A run row as ``workflow.run`` or ``agent.run``, as its kind says.

    ``steps`` (step id -> binding) is only used for workflow runs; ``created``
    marks the answer to the request that created the run, the only one that
    shows its ``webhook_secret``.
    """
    if row["kind"] == "task":
        return task_run_object(row, request_id, created=created)
    return workflow_run_object(row, request_id, steps=steps or {}, created=created)


def workflow_run_object(
    row: dict[str, Any], request_id: str, *, steps: dict[str, Any], created: bool = False
) -> dict[str, Any]:
    """A workflow run row (and its step bindings) as the ``workflow.run`` object."""
    params: dict[str, Any] = row.get("params") or {}
    guards: dict[str, Any] = row.get("guards") or {}
    return {
        "id": row["id"],
        "object": "workflow.run",
        "status": row["status"],
        "workflow_id": row.get("workflow_id"),
        "workflow_version": row.get("workflow_version"),
        "machine_id": params.get("machine_id"),
        "inputs": row.get("inputs") or {},
        "output": row.get("output"),
        "error": row.get("error"),
        "current_step_id": row.get("current_step_id"),
        "awaiting_step_id": row.get("awaiting_step_id"),
        "awaiting_human_reason": row.get("awaiting_human_reason"),
        "steps": steps,
        "iterations_used": row.get("iterations_used") or 0,
        "steps_completed": row.get("steps_completed") or 0,
        "spent_cents": row.get("spent_cents") or 0,
        "budget_cents": guards.get("budget_cents"),
        "max_iterations": guards.get("max_iterations"),
        "deadline_seconds": guards.get("deadline_seconds"),
        "on_awaiting_human": params.get("on_awaiting_human") or "pause",
        "test_mode": bool(row.get("test_mode")),
        "webhook_url": row.get("webhook_url"),
        "webhook_secret": row.get("webhook_secret") if created else None,
        "metadata": _metadata(row),
        "created_at": iso(row.get("created_at")),
        "started_at": iso(row.get("started_at")),
        "awaiting_human_since": iso(row.get("awaiting_human_since")),
        "finished_at": iso(row.get("finished_at")),
        "request_id": request_id,
    }


def task_run_object(
    row: dict[str, Any], request_id: str, *, created: bool = False
) -> dict[str, Any]:
    """A task run row as the ``agent.run`` object."""
    params: dict[str, Any] = row.get("params") or {}
    path = row.get("step_id")
    spent = row.get("spent_cents") or 0
    return {
        "id": row["id"],
        "object": "agent.run",
        "status": row["status"],
        "machine_id": params.get("machine_id"),
        "task": params.get("task"),
        "cua_version": params.get("cua_version") or "v3",
        "instructions": params.get("instructions"),
        "max_steps": params.get("max_steps") or 50,
        "on_awaiting_human": params.get("on_awaiting_human") or "pause",
        "steps_completed": row.get("steps_completed") or 0,
        "cost_cents": spent,
        "credits_charged": spent,
        "result": row.get("result"),
        "error": row.get("error"),
        "awaiting_human_reason": row.get("awaiting_human_reason"),
        "parent_run_id": row.get("parent_run_id"),
        "workflow_id": row.get("workflow_id"),
        "step_id": step_id_of(path) if path else None,
        "step_path": path,
        "test_mode": bool(row.get("test_mode")),
        "webhook_url": row.get("webhook_url"),
        "webhook_secret": row.get("webhook_secret") if created else None,
        "metadata": _metadata(row),
        "created_at": iso(row.get("created_at")),
        "started_at": iso(row.get("started_at")),
        "awaiting_human_since": iso(row.get("awaiting_human_since")),
        "finished_at": iso(row.get("finished_at")),
        "request_id": request_id,
    }


def step_id_of(path: str) -> str:
    """The step id at the end of a step path (``each[2]/upload`` -> ``upload``)."""
    last = path.rsplit("/", 1)[-1]
    return _PATH_DECORATION.sub("", last)


def event_data(event: dict[str, Any]) -> dict[str, Any]:
    """An event's ``data`` as streamed: tagged with its ``step_id`` when it has one."""
    data: dict[str, Any] = event["data"] if isinstance(event["data"], dict) else {}
    step_id = event.get("step_id")
    if step_id and "step_id" not in data:
        data = {**data, "step_id": step_id}
    return data


def list_object(data: list[dict[str, Any]], has_more: bool, request_id: str) -> dict[str, Any]:
    """A page of objects."""
    return {"object": "list", "data": data, "has_more": has_more, "request_id": request_id}


def _metadata(row: dict[str, Any]) -> Any:
    return row.get("metadata", row.get("metadata_"))
