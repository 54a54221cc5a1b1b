"""Routes on runs of both kinds: start a task run, list, read, cancel, resume.

The same handlers serve the brief's paths (``/v1/runs...``, scopes
``runs:read``/``runs:write``) and the reference's (``/v1/workflows/runs...``,
scopes ``workflows:read``/``workflows:write``, listing workflow runs unless
``type`` says otherwise).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from cuaflow.api.auth import Principal, RunsWrite, require
from cuaflow.api.errors import ApiError, request_id_of
from cuaflow.api.idempotency import idempotent
from cuaflow.api.models import ResumeBody, RunList, TaskRunBody, TaskRunObject, WorkflowRunObject
from cuaflow.api.pagination import Limit, StartingAfter, check_cursor, invalid_cursor
from cuaflow.api.serializers import list_object, run_object, task_run_object
from cuaflow.api.services import Services, services
from cuaflow.engine.start import start_task_run
from cuaflow.errors import InvalidState, NotFound
from cuaflow.store import runs as store
from cuaflow.store.run_queries import list_runs, step_bindings
from cuaflow.store.tables import RUN_STATUSES

RunStatus = Literal[
    "queued", "running", "awaiting_human", "succeeded", "failed", "cancelled", "timed_out"
]
RunType = Literal["task", "workflow"]
RunId = Annotated[str, Path(max_length=100, description="A run id (wfr_... or run_...).")]
Deps = Annotated[Services, Depends(services)]
AnyRunObject = WorkflowRunObject | TaskRunObject
# How long cancel waits for a run held by a worker to stop, before answering anyway.
CANCEL_WAIT_SECONDS = 5.0
_ACTIVE = [status for status in RUN_STATUSES if status not in store.FINISHED]

router = APIRouter(tags=["runs"])


@router.post("/v1/runs", responses={200: {"model": TaskRunObject}}, summary="Start a task run")
async def start_task(
    request: Request,
    options: TaskRunBody,
    svc: Deps,
    who: RunsWrite,
) -> JSONResponse:
    """Start one task for an agent on a machine; ``machine_id`` and ``task`` are required."""

    async def create() -> tuple[int, dict[str, Any]]:
        row = await svc.writes.run(
            lambda db: start_task_run(db, options, tenant_id=who.tenant_id, test_mode=who.test_mode)
        )
        svc.wake_worker()
        svc.hub.poke(row["id"])
        return 200, task_run_object(row, request_id_of(request), created=True)

    return await idempotent(request, svc, who.tenant_id, create)


def _register(prefix: str, read_scope: str, write_scope: str, default_type: RunType | None) -> None:
    """Add list/get/cancel/resume under ``prefix`` with the given scopes."""
    reader: Callable[..., Awaitable[Principal]] = require(read_scope)
    writer: Callable[..., Awaitable[Principal]] = require(write_scope)

    async def list_all(
        request: Request,
        svc: Deps,
        who: Annotated[Principal, Depends(reader)],
        limit: Limit = 20,
        starting_after: StartingAfter = None,
        status: Annotated[RunStatus | None, Query()] = None,
        workflow_id: Annotated[str | None, Query(max_length=100)] = None,
        type: Annotated[RunType | None, Query()] = default_type,
    ) -> JSONResponse:
        """Runs of both kinds, newest first, filtered by status, workflow and type."""
        cursor = check_cursor(starting_after, ("wfr_", "run_"))
        try:
            rows, more = await asyncio.to_thread(
                list_runs,
                svc.reads,
                who.tenant_id,
                limit=limit,
                starting_after=cursor,
                status=status,
                kind=type,
                workflow_id=workflow_id,
            )
        except NotFound:
            raise invalid_cursor(str(cursor)) from None
        ids = [row["id"] for row in rows if row["kind"] == "workflow"]
        steps = await asyncio.to_thread(step_bindings, svc.reads, ids) if ids else {}
        rid = request_id_of(request)
        data = [run_object(row, rid, steps=steps.get(row["id"])) for row in rows]
        return JSONResponse(list_object(data, more, rid))

    async def get_one(
        request: Request, run_id: RunId, svc: Deps, who: Annotated[Principal, Depends(reader)]
    ) -> JSONResponse:
        """One run of either kind."""
        return JSONResponse(await _run_answer(svc, who, run_id, request_id_of(request)))

    async def cancel(
        request: Request, run_id: RunId, svc: Deps, who: Annotated[Principal, Depends(writer)]
    ) -> JSONResponse:
        """Cancel a run; a finished one answers 409 ``INVALID_STATE``."""
        row = await _get(svc, who, run_id)
        _check_cancellable(row)
        worker = svc.worker
        if worker is None or not worker.cancel(run_id):
            try:
                await svc.writes.run(lambda db: store.request_cancel(db, run_id, who.tenant_id))
            except InvalidState:
                _check_cancellable(await _get(svc, who, run_id))
                raise
            svc.hub.poke(run_id)
        await _wait_finished(svc, who, run_id)
        return JSONResponse(await _run_answer(svc, who, run_id, request_id_of(request)))

    async def resume(
        request: Request,
        run_id: RunId,
        svc: Deps,
        who: Annotated[Principal, Depends(writer)],
        body: Annotated[ResumeBody | None, Body()] = None,
    ) -> JSONResponse:
        """Answer the approval a run waits for (default: approve); else 409."""
        answer = body or ResumeBody()
        try:
            await svc.writes.run(
                lambda db: store.resume_run(
                    db, run_id, approved=answer.approved, note=answer.note, tenant_id=who.tenant_id
                )
            )
        except NotFound:
            raise _run_not_found(run_id) from None
        except InvalidState as exc:
            current = (await _get(svc, who, run_id))["status"]
            raise ApiError(
                409, exc.code, str(exc), current_state=current, allowed_from=["awaiting_human"]
            ) from None
        svc.wake_worker()
        svc.hub.poke(run_id)
        return JSONResponse(await _run_answer(svc, who, run_id, request_id_of(request)))

    one: dict[int | str, dict[str, Any]] = {200: {"model": AnyRunObject}}
    many: dict[int | str, dict[str, Any]] = {200: {"model": RunList}}
    one_run = f"{prefix}/{{run_id}}"
    add = router.add_api_route
    add(prefix, list_all, methods=["GET"], summary="List runs", responses=many)
    add(one_run, get_one, methods=["GET"], summary="Get a run", responses=one)
    add(f"{one_run}/cancel", cancel, methods=["POST"], summary="Cancel a run", responses=one)
    add(f"{one_run}/resume", resume, methods=["POST"], summary="Resume a run", responses=one)


def _check_cancellable(row: dict[str, Any]) -> None:
    if row["status"] in store.FINISHED:
        raise ApiError(
            409,
            "INVALID_STATE",
            f"run '{row['id']}' already finished as {row['status']}",
            current_state=row["status"],
            allowed_from=_ACTIVE,
        )
    if row.get("parent_run_id"):
        raise ApiError(
            409,
            "INVALID_STATE",
            f"run '{row['id']}' is a task step of workflow run '{row['parent_run_id']}'",
            suggestion=f"Cancel the workflow run: POST /v1/runs/{row['parent_run_id']}/cancel",
            current_state=row["status"],
            allowed_from=_ACTIVE,
        )


async def _wait_finished(svc: Services, who: Principal, run_id: str) -> None:
    """Wait (a few seconds at most) until a run whose cancellation was asked has stopped."""
    sub = svc.hub.subscribe(run_id)
    try:
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while (await _get(svc, who, run_id))["status"] not in store.FINISHED:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sub.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), min(left, 0.25))
    finally:
        svc.hub.unsubscribe(sub)


async def _get(svc: Services, who: Principal, run_id: str) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(store.get_run, svc.reads, run_id, who.tenant_id)
    except NotFound:
        raise _run_not_found(run_id) from None


async def _run_answer(
    svc: Services, who: Principal, run_id: str, request_id: str
) -> dict[str, Any]:
    row = await _get(svc, who, run_id)
    steps = None
    if row["kind"] == "workflow":
        steps = (await asyncio.to_thread(step_bindings, svc.reads, [run_id]))[run_id]
    return run_object(row, request_id, steps=steps)


def _run_not_found(run_id: str) -> ApiError:
    return ApiError(404, "RUN_NOT_FOUND", f"no run with id '{run_id}'")


_register("/v1/runs", "runs:read", "runs:write", None)
_register("/v1/workflows/runs", "workflows:read", "workflows:write", "workflow")
