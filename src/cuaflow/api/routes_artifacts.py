"""A run's artifacts: the screenshots its agent saw, listed and served."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse

from cuaflow.api.auth import Principal, require
from cuaflow.api.errors import ApiError, request_id_of
from cuaflow.api.serializers import list_object
from cuaflow.api.services import Services, services
from cuaflow.errors import NotFound
from cuaflow.store import runs as store
from cuaflow.store.artifacts import ArtifactStore, content_type

router = APIRouter(tags=["runs"])
Deps = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(require("runs:read"))]
RunId = Annotated[str, Path(max_length=100, description="A run id (wfr_... or run_...).")]
Name = Annotated[str, Path(max_length=128, description="An artifact's name.")]


def _artifacts(svc: Services) -> ArtifactStore:
    assert svc.machines is not None  # the app's lifespan always sets it
    return ArtifactStore(svc.machines.data_dir)


async def _own_run(svc: Services, who: Principal, run_id: str) -> None:
    try:
        await asyncio.to_thread(store.get_run, svc.engine, run_id, who.tenant_id)
    except NotFound:
        raise ApiError(404, "RUN_NOT_FOUND", f"no run with id '{run_id}'") from None


@router.get("/v1/runs/{run_id}/artifacts", summary="List a run's artifacts")
async def list_artifacts(request: Request, run_id: RunId, svc: Deps, who: Reader) -> dict[str, Any]:
    """The run's artifacts, oldest first, each with the path that serves it."""
    await _own_run(svc, who, run_id)
    names = await asyncio.to_thread(_artifacts(svc).names, run_id)
    data = [
        {
            "object": "artifact",
            "name": name,
            "content_type": content_type(name),
            "url": f"/v1/runs/{run_id}/artifacts/{name}",
        }
        for name in names
    ]
    return list_object(data, False, request_id_of(request))


@router.get(
    "/v1/runs/{run_id}/artifacts/{name}",
    summary="Download an artifact",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}},
)
async def get_artifact(run_id: RunId, name: Name, svc: Deps, who: Reader) -> FileResponse:
    """One artifact's bytes (a PNG screenshot, usually)."""
    await _own_run(svc, who, run_id)
    try:
        path = _artifacts(svc).path(run_id, name)
    except NotFound as exc:
        raise ApiError(404, "ARTIFACT_NOT_FOUND", str(exc)) from None
    return FileResponse(path, media_type=content_type(name))
