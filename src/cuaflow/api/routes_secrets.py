"""The secrets API: set, list and delete a tenant's secrets; values are never returned.

Secrets are what machines type (``{{secrets.NAME}}``), so they share the
machines scopes: ``machines:read`` lists names, ``machines:write`` sets and
deletes.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from cuaflow.api.auth import Principal, require
from cuaflow.api.errors import ApiError, request_id_of
from cuaflow.api.serializers import iso, list_object
from cuaflow.api.services import Services, services
from cuaflow.errors import NotFound
from cuaflow.store import secrets as secret_store

router = APIRouter(tags=["secrets"])
Deps = Annotated[Services, Depends(services)]
Name = Annotated[str, Path(max_length=128, description="The secret's name.")]


class SecretBody(BaseModel):
    """A secret's value."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(max_length=secret_store.MAX_VALUE_BYTES)


def secret_object(row: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """The public shape of a secret: its name and dates, never its value."""
    found = {
        "name": row["name"],
        "object": "secret",
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    return found | ({"request_id": request_id} if request_id else {})


@router.get("/v1/secrets", summary="List secrets")
async def list_all(
    request: Request, svc: Deps, who: Annotated[Principal, Depends(require("machines:read"))]
) -> dict[str, Any]:
    """The tenant's secrets by name."""
    rows = await asyncio.to_thread(secret_store.list_secrets, svc.engine, tenant_id=who.tenant_id)
    return list_object([secret_object(row) for row in rows], False, request_id_of(request))


@router.put("/v1/secrets/{name}", summary="Set a secret")
async def put(
    request: Request,
    name: Name,
    body: SecretBody,
    svc: Deps,
    who: Annotated[Principal, Depends(require("machines:write"))],
) -> dict[str, Any]:
    """Create or replace a secret; the answer never carries the value."""
    await asyncio.to_thread(
        secret_store.set_secret, svc.engine, name, body.value, tenant_id=who.tenant_id
    )
    rows = await asyncio.to_thread(secret_store.list_secrets, svc.engine, tenant_id=who.tenant_id)
    row = next(row for row in rows if row["name"] == name)
    return secret_object(row, request_id_of(request))


@router.delete("/v1/secrets/{name}", summary="Delete a secret")
async def delete(
    request: Request,
    name: Name,
    svc: Deps,
    who: Annotated[Principal, Depends(require("machines:write"))],
) -> dict[str, Any]:
    """Delete a secret; tasks naming it afterwards fail at that step."""
    try:
        await asyncio.to_thread(
            secret_store.delete_secret, svc.engine, name, tenant_id=who.tenant_id
        )
    except NotFound as exc:
        raise ApiError(404, "SECRET_NOT_FOUND", str(exc)) from None
    return {"name": name, "object": "secret", "deleted": True, "request_id": request_id_of(request)}
