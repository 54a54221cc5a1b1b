"""The machines API: register, list, get and delete machines; look at one; act on one.

``GET /v1/machines/{id}/screenshot`` and ``POST /v1/machines/{id}/actions``
are for debugging a workflow: they drive the machine directly, outside any
run. A shared machine (desktop, CDP browser) is the worker's own instance,
taken under its lease, so a debugging action never cuts into a running task;
any other machine gets one debugging instance per tenant and id in this
process, closed when the machine is deleted or the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cuaflow.api.auth import Principal, require
from cuaflow.api.errors import ApiError, request_id_of, validation_error
from cuaflow.api.serializers import iso, list_object
from cuaflow.api.services import Services, services
from cuaflow.dsl.actions import ACTION_ADAPTER
from cuaflow.errors import InvalidState, Issue, MachineError, NotFound
from cuaflow.machines.base import Machine, Observation
from cuaflow.machines.registry import SHARED_KINDS, build_machine
from cuaflow.store import machines as machine_store
from cuaflow.store.secrets import load_secrets

router = APIRouter(tags=["machines"])
# As in the agent loop: a refused capture is tried once more after this pause.
OBSERVE_RETRY_SECONDS = 0.25
Deps = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(require("machines:read"))]
Writer = Annotated[Principal, Depends(require("machines:write"))]
MachineId = Annotated[str, Path(max_length=64, description="A machine id.")]


class MachineBody(BaseModel):
    """A machine to register: its id, kind and kind's config."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)


def machine_object(machine: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The public shape of a machine."""
    return {
        "id": machine["id"],
        "object": "machine",
        "kind": machine["kind"],
        "config": machine["config"],
        "builtin": machine["builtin"],
        "shared": machine["kind"] in SHARED_KINDS,
        "created_at": iso(machine["created_at"]),
        "request_id": request_id,
    }


def _not_found(exc: NotFound) -> ApiError:
    return ApiError(404, "MACHINE_NOT_FOUND", str(exc))


@router.post("/v1/machines", summary="Register a machine")
async def register(request: Request, body: MachineBody, svc: Deps, who: Writer) -> JSONResponse:
    """Register a terminal, browser, cdp, desktop or ssh machine for this tenant."""
    try:
        machine = await asyncio.to_thread(
            machine_store.register_machine,
            svc.engine,
            body.id,
            body.kind,
            body.config,
            tenant_id=who.tenant_id,
        )
    except InvalidState as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    return JSONResponse(machine_object(machine, request_id_of(request)))


@router.get("/v1/machines", summary="List machines")
async def list_all(request: Request, svc: Deps, who: Reader) -> dict[str, Any]:
    """The built-in machines and this tenant's registered ones."""
    machines = await asyncio.to_thread(
        machine_store.list_machines, svc.engine, tenant_id=who.tenant_id
    )
    request_id = request_id_of(request)
    return list_object([machine_object(m, request_id) for m in machines], False, request_id)


@router.get("/v1/machines/{machine_id}", summary="Get a machine")
async def get_one(
    request: Request, machine_id: MachineId, svc: Deps, who: Reader
) -> dict[str, Any]:
    """One machine by id."""
    machines = await asyncio.to_thread(
        machine_store.list_machines, svc.engine, tenant_id=who.tenant_id
    )
    for machine in machines:
        if machine["id"] == machine_id:
            return machine_object(machine, request_id_of(request))
    raise ApiError(404, "MACHINE_NOT_FOUND", f"no machine with id '{machine_id}'")


@router.delete("/v1/machines/{machine_id}", summary="Delete a machine")
async def delete(request: Request, machine_id: MachineId, svc: Deps, who: Writer) -> dict[str, Any]:
    """Remove a registered machine; runs that name it afterwards fail their task."""
    try:
        await asyncio.to_thread(
            machine_store.delete_machine, svc.engine, machine_id, tenant_id=who.tenant_id
        )
    except NotFound as exc:
        raise _not_found(exc) from None
    except InvalidState as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    debug = svc.debug_machines.pop((who.tenant_id, machine_id), None)
    if debug is not None:
        await debug.close()
    return {
        "id": machine_id,
        "object": "machine",
        "deleted": True,
        "request_id": request_id_of(request),
    }


@router.get(
    "/v1/machines/{machine_id}/screenshot",
    summary="See a machine's screen",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def screenshot(machine_id: MachineId, svc: Deps, who: Reader) -> Response:
    """A PNG of what the machine shows now (409 for a machine with no screen)."""
    async with _machine(svc, who, machine_id) as (machine, _):
        try:
            observation = await _observe(machine)
        except MachineError as exc:
            raise ApiError(503, "MACHINE_ERROR", f"machine '{machine_id}': {exc}") from None
    if not observation.screenshot_png:
        raise ApiError(409, "NO_SCREEN", f"machine '{machine_id}' ({machine.kind}) has no screen")
    return Response(observation.screenshot_png, media_type="image/png")


@router.post("/v1/machines/{machine_id}/actions", summary="Perform one action")
async def act(
    request: Request,
    machine_id: MachineId,
    svc: Deps,
    who: Writer,
    action: Annotated[dict[str, Any], Body(description="One action, e.g. {type: bash, command}.")],
) -> dict[str, Any]:
    """Perform one action on the machine, outside any run, and report how it went."""
    try:
        parsed = ACTION_ADAPTER.validate_python(action)
    except ValidationError as exc:
        issues = [Issue(tuple(e["loc"][1:]) or ("type",), e["msg"]) for e in exc.errors()]
        raise validation_error(issues) from None
    async with _machine(svc, who, machine_id) as (machine, secrets):
        result = await machine.perform(parsed, secrets=secrets)
    return {
        "object": "machine.action_result",
        "machine_id": machine_id,
        "ok": result.ok,
        "output": result.output,
        "exit_code": result.exit_code,
        "error": result.error,
        "data": result.data,
        "request_id": request_id_of(request),
    }


async def _observe(machine: Machine) -> Observation:
    # A browser busy painting can refuse one capture; a second try a moment later decides.
    try:
        return await machine.observe()
    except MachineError:
        await asyncio.sleep(OBSERVE_RETRY_SECONDS)
        return await machine.observe()


@contextlib.asynccontextmanager
async def _machine(
    svc: Services, who: Principal, machine_id: str
) -> AsyncIterator[tuple[Machine, dict[str, str]]]:
    pool = svc.machines
    assert pool is not None  # the app's lifespan always sets it
    try:
        spec = await pool.spec(who.tenant_id, machine_id)
    except NotFound as exc:
        raise _not_found(exc) from None
    secrets = await asyncio.to_thread(load_secrets, svc.engine, who.tenant_id)
    if spec.kind in SHARED_KINDS:
        machine = pool.shared(who.tenant_id, spec)
        async with machine.lease.hold(f"api:{who.key_id}"):  # type: ignore[attr-defined]  # shared kinds carry one
            yield machine, secrets
        return
    key = (who.tenant_id, machine_id)
    if key not in svc.debug_machines:
        workdir = pool.data_dir / "machines" / who.tenant_id / machine_id
        svc.debug_machines[key] = build_machine(spec, workdir=workdir, secrets=secrets)
    yield svc.debug_machines[key], secrets
