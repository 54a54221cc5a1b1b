"""A run's webhook deliveries: what was sent, how it went, and sending one again."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from cuaflow.api.auth import Principal, require
from cuaflow.api.errors import ApiError, request_id_of
from cuaflow.api.serializers import iso, list_object
from cuaflow.api.services import Services, services
from cuaflow.errors import NotFound
from cuaflow.store import webhooks as webhook_store

router = APIRouter(tags=["webhooks"])
Deps = Annotated[Services, Depends(services)]
RunId = Annotated[str, Path(max_length=100, description="A run id (wfr_... or run_...).")]
DeliveryId = Annotated[str, Path(max_length=100, description="A webhook delivery id.")]


def delivery_object(delivery: dict[str, Any]) -> dict[str, Any]:
    """The public shape of one delivery."""
    return {
        "id": delivery["id"],
        "object": "webhook.delivery",
        "event": delivery["event"],
        "url": delivery["url"],
        "status": delivery["status"],
        "attempts": delivery["attempts"],
        "last_status_code": delivery["last_status_code"],
        "last_error": delivery["last_error"],
        "next_attempt_at": iso(delivery["next_attempt_at"]),
        "created_at": iso(delivery["created_at"]),
        "delivered_at": iso(delivery["delivered_at"]),
    }


@router.get("/v1/runs/{run_id}/webhooks", summary="List a run's webhook deliveries")
async def list_deliveries(
    request: Request,
    run_id: RunId,
    svc: Deps,
    who: Annotated[Principal, Depends(require("runs:read"))],
) -> dict[str, Any]:
    """Every delivery of the run, oldest first, with attempts, status codes and next attempt."""
    try:
        deliveries = await asyncio.to_thread(
            webhook_store.list_deliveries, svc.engine, run_id, who.tenant_id
        )
    except NotFound as exc:
        raise ApiError(404, "RUN_NOT_FOUND", str(exc)) from None
    return list_object([delivery_object(d) for d in deliveries], False, request_id_of(request))


@router.post(
    "/v1/runs/{run_id}/webhooks/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a delivery again",
)
async def redeliver(
    request: Request,
    run_id: RunId,
    delivery_id: DeliveryId,
    svc: Deps,
    who: Annotated[Principal, Depends(require("runs:write"))],
) -> JSONResponse:
    """Queue the delivery again now, with the same body and webhook-id."""
    try:
        delivery = await asyncio.to_thread(
            webhook_store.redeliver, svc.engine, run_id, delivery_id, who.tenant_id
        )
    except NotFound as exc:
        raise ApiError(404, "NOT_FOUND", str(exc)) from None
    body = delivery_object(delivery) | {"request_id": request_id_of(request)}
    return JSONResponse(body, status_code=202)
