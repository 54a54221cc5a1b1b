"""Routes under ``/v1/workflows``: save, version, read, archive, validate, and start runs.

A definition may come in the brief's form (``steps`` at the top, ``version``
as the author's label) or the reference form (``definition: {steps,
output}``). A workflow without a ``slug`` gets one from its name
(``setup-and-test``), so posting the same workflow again adds a version rather
than a second workflow. An archived workflow can still be read but not run;
saving a new version of it makes it active again.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from cuaflow.api.auth import Principal, WorkflowsRead, WorkflowsWrite
from cuaflow.api.errors import ApiError, request_id_of, validation_error
from cuaflow.api.idempotency import idempotent
from cuaflow.api.models import (
    WORKFLOW_BODY_DESCRIPTION,
    AdHocRunBody,
    StartRunBody,
    ValidationResult,
    WorkflowList,
    WorkflowObject,
    WorkflowRunObject,
)
from cuaflow.api.pagination import Limit, StartingAfter, check_cursor, invalid_cursor
from cuaflow.api.serializers import list_object, workflow_object, workflow_run_object
from cuaflow.api.services import Services, services
from cuaflow.dsl.models import Workflow
from cuaflow.dsl.parse import parse_workflow, workflow_document
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.errors import InvalidState, Issue, NotFound, WorkflowInvalid
from cuaflow.store import workflows as store
from cuaflow.store.workflows import WorkflowValues

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

WorkflowBody = Annotated[dict[str, Any], Body(description=WORKFLOW_BODY_DESCRIPTION)]
WorkflowId = Annotated[str, Path(max_length=100, description="A workflow id (wf_...).")]
Deps = Annotated[Services, Depends(services)]
_DEFINITION_PARTS = ("steps", "output", "guards", "definition")


@router.post("", responses={200: {"model": WorkflowObject}}, summary="Create a workflow")
async def create_workflow(
    request: Request, body: WorkflowBody, who: WorkflowsWrite, svc: Deps
) -> JSONResponse:
    """Save a definition; an existing slug gets a new version."""

    async def create() -> tuple[int, dict[str, Any]]:
        workflow = parse_workflow(body)
        values = _values(workflow)
        row = await svc.writes.run(lambda db: store.save_by_slug(db, who.tenant_id, values))
        svc.remember(row["id"], row["version"], workflow)
        return 200, workflow_object(row, request_id_of(request))

    return await idempotent(request, svc, who.tenant_id, create)


@router.get("", responses={200: {"model": WorkflowList}}, summary="List workflows")
async def list_workflows(
    request: Request,
    who: WorkflowsRead,
    svc: Deps,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    status: Annotated[Literal["active", "archived"] | None, Query()] = None,
) -> JSONResponse:
    """The latest version of each workflow, newest first."""
    cursor = check_cursor(starting_after, ("wf_",))
    try:
        rows, more = await asyncio.to_thread(
            store.list_workflows,
            svc.reads,
            who.tenant_id,
            limit=limit,
            starting_after=cursor,
            status=status,
        )
    except NotFound:
        raise invalid_cursor(str(cursor)) from None
    rid = request_id_of(request)
    return JSONResponse(list_object([workflow_object(row, rid) for row in rows], more, rid))


@router.post(
    "/validate", responses={200: {"model": ValidationResult}}, summary="Validate a definition"
)
async def validate_workflow(
    request: Request, body: WorkflowBody, who: WorkflowsRead
) -> JSONResponse:
    """Check a definition without saving it: 200 with its canonical form, or 422 with details."""
    workflow = parse_workflow(body)
    document = workflow_document(workflow)
    return JSONResponse(
        {
            "object": "workflow.validation",
            "valid": True,
            "dsl_version": workflow.dsl_version,
            "definition": document,
            "request_id": request_id_of(request),
        }
    )


@router.post("/runs", responses={200: {"model": WorkflowRunObject}}, summary="Start an ad-hoc run")
async def start_adhoc_run(
    request: Request, body: AdHocRunBody, who: WorkflowsWrite, svc: Deps
) -> JSONResponse:
    """Start a run of the inline ``definition`` (not saved; ``workflow_id`` is null)."""

    async def create() -> tuple[int, dict[str, Any]]:
        workflow = _adhoc_workflow(body)
        options = RunOptions.model_validate(
            body.model_dump(exclude={"definition", "inputs_schema"})
        )
        row = await svc.writes.run(
            lambda db: start_workflow_run(
                db, workflow, options, tenant_id=who.tenant_id, test_mode=who.test_mode
            )
        )
        return 200, _started(request, svc, row)

    return await idempotent(request, svc, who.tenant_id, create)


@router.get("/{workflow_id}", responses={200: {"model": WorkflowObject}}, summary="Get a workflow")
async def get_workflow(
    request: Request,
    workflow_id: WorkflowId,
    who: WorkflowsRead,
    svc: Deps,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> JSONResponse:
    """The latest version, or ``?version=N``."""
    row = await _load(svc, who, workflow_id, version)
    return JSONResponse(workflow_object(row, request_id_of(request)))


@router.put(
    "/{workflow_id}", responses={200: {"model": WorkflowObject}}, summary="Save a new version"
)
async def update_workflow(
    request: Request, workflow_id: WorkflowId, body: WorkflowBody, who: WorkflowsWrite, svc: Deps
) -> JSONResponse:
    """Save the next version from the latest one and the fields given; earlier ones stay.

    Only ``status`` (``active`` or ``archived``) changes the workflow without a new version.
    """
    changes = dict(body)
    status = changes.pop("status", None)
    if status not in (None, "active", "archived"):
        raise validation_error([Issue(("status",), "must be 'active' or 'archived'")])
    if not changes and status is None:
        raise validation_error([Issue((), "the body names nothing to change")])
    latest = await _load(svc, who, workflow_id, None)
    row = latest
    if changes:
        document = dict(latest["definition"])
        if any(part in changes for part in _DEFINITION_PARTS):
            for part in _DEFINITION_PARTS:
                document.pop(part, None)
        workflow = parse_workflow(document | changes)
        try:
            values = _values(workflow)
            row = await svc.writes.run(
                lambda db: store.save_new_version(db, who.tenant_id, workflow_id, values)
            )
        except InvalidState as exc:
            raise ApiError(409, exc.code, str(exc)) from None
        svc.remember(row["id"], row["version"], workflow)
    if status is not None:
        row = await svc.writes.run(
            lambda db: store.set_status(db, who.tenant_id, workflow_id, status)
        )
    return JSONResponse(workflow_object(row, request_id_of(request)))


@router.delete(
    "/{workflow_id}", responses={200: {"model": WorkflowObject}}, summary="Archive a workflow"
)
async def archive_workflow(
    request: Request, workflow_id: WorkflowId, who: WorkflowsWrite, svc: Deps
) -> JSONResponse:
    """Archive it: it can be read (and its runs go on) but not started again."""
    await _load(svc, who, workflow_id, None)
    row = await svc.writes.run(
        lambda db: store.set_status(db, who.tenant_id, workflow_id, "archived")
    )
    return JSONResponse(workflow_object(row, request_id_of(request)))


@router.post(
    "/{workflow_id}/runs",
    responses={200: {"model": WorkflowRunObject}},
    summary="Start a run of a saved workflow",
)
async def start_run(
    request: Request,
    workflow_id: WorkflowId,
    who: WorkflowsWrite,
    svc: Deps,
    options: Annotated[StartRunBody | None, Body()] = None,
) -> JSONResponse:
    """Start a run of the latest version (or ``version``); the run pins that version."""
    chosen = options or RunOptions()

    def start(db: sa.Engine) -> dict[str, Any]:
        # Looked up in the same transaction as the insert: one trip to the
        # database, and no new version or archiving can slip in between.
        try:
            row = store.get_workflow(db, who.tenant_id, workflow_id, chosen.version)
        except NotFound as exc:
            raise ApiError(404, "WORKFLOW_NOT_FOUND", str(exc)) from None
        if row["status"] != "active":
            raise ApiError(
                409,
                "INVALID_STATE",
                f"workflow '{workflow_id}' is archived; save a new version to run it again",
                current_state=row["status"],
                allowed_from=["active"],
            )
        return start_workflow_run(
            db,
            svc.workflow_of(row),
            chosen,
            tenant_id=who.tenant_id,
            workflow_id=row["id"],
            workflow_version=row["version"],
            test_mode=who.test_mode,
        )

    async def create() -> tuple[int, dict[str, Any]]:
        return 200, _started(request, svc, await svc.writes.run(start))

    return await idempotent(request, svc, who.tenant_id, create)


def _started(request: Request, svc: Services, row: dict[str, Any]) -> dict[str, Any]:
    svc.wake_worker()
    svc.hub.poke(row["id"])
    return workflow_run_object(row, request_id_of(request), steps={}, created=True)


async def _load(
    svc: Services, who: Principal, workflow_id: str, version: int | None
) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(
            store.get_workflow, svc.reads, who.tenant_id, workflow_id, version
        )
    except NotFound as exc:
        raise ApiError(404, "WORKFLOW_NOT_FOUND", str(exc)) from None


def _adhoc_workflow(body: AdHocRunBody) -> Workflow:
    document = dict(body.definition)
    document.setdefault("name", "ad-hoc")
    if body.inputs_schema is not None:
        document["inputs_schema"] = body.inputs_schema
    try:
        return parse_workflow(document)
    except WorkflowInvalid as exc:
        issues = []
        for issue in exc.issues:
            from_body = body.inputs_schema is not None and issue.loc[:1] == ("inputs_schema",)
            issues.append(issue if from_body else Issue(("definition", *issue.loc), issue.msg))
        raise validation_error(issues) from None


def _values(workflow: Workflow) -> WorkflowValues:
    return WorkflowValues(
        name=workflow.name,
        slug=workflow.slug or slugify(workflow.name),
        version_label=workflow.version,
        dsl_version=workflow.dsl_version,
        definition=workflow_document(workflow),
        inputs_schema=workflow.inputs_schema,
        description=workflow.description,
        metadata=workflow.metadata,
    )


def slugify(name: str) -> str:
    """A slug made from a workflow's name: ``Setup and Test!`` -> ``setup-and-test``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    return slug[:100].rstrip("-_") or "workflow"
