"""The FastAPI application: routes, error envelope, middleware, and the in-process worker.

:func:`create_app` builds the app; its lifespan opens the database, starts the
event hub and (unless ``run_worker`` is False) a
:class:`~cuaflow.worker.worker.Worker` on the same event loop, whose writer
tells the hub about every commit so event streams see new events at once.
``/openapi.json`` describes every route; ``/docs`` is a page that renders it
and can send requests, with no asset from outside this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.resources
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from cuaflow.api import (
    routes_artifacts,
    routes_events,
    routes_machines,
    routes_runs,
    routes_secrets,
    routes_webhooks,
    routes_workflows,
)
from cuaflow.api.auth import KeyCache
from cuaflow.api.body_checks import reject_nul_characters
from cuaflow.api.errors import install_error_handlers
from cuaflow.api.event_hub import EventHub
from cuaflow.api.middleware import RequestContextMiddleware
from cuaflow.api.models import ErrorEnvelope
from cuaflow.api.services import Services
from cuaflow.api.settings import ApiSettings
from cuaflow.api.write_lane import WriteLane
from cuaflow.config import data_dir
from cuaflow.engine.machine_pool import MachinePool
from cuaflow.store import idempotency as idempotency_store
from cuaflow.store.database import open_database
from cuaflow.store.read_engine import read_engine
from cuaflow.worker.worker import Worker

DESCRIPTION = """\
The cuaflow HTTP API: durable workflows for computer-use agents.

Authenticate every `/v1` route with `X-API-Key: <key>` or
`Authorization: Bearer <key>` (create keys with `cuaflow keys create`). Errors
are `{"error": {code, message, type, request_id, suggestion?, ...}}`.
"""

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in {
        400: "Invalid query parameter (limit, filter, cursor)",
        401: "Missing, malformed or revoked API key",
        403: "The key lacks the route's scope",
        404: "No such object in this tenant, or no such route",
        409: "The object's state does not allow this",
        413: "The body is larger than the limit",
        422: "Invalid body, parameter or header (details name each field)",
        500: "Unexpected server failure",
        503: "The database is unavailable",
    }.items()
}


def create_app(
    *,
    database_url: str | None = None,
    engine: sa.Engine | None = None,
    run_worker: bool = True,
    settings: ApiSettings | None = None,
) -> FastAPI:
    """The API app on ``engine`` (or a database opened from ``database_url`` at startup)."""
    chosen = settings or ApiSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = engine or open_database(database_url)
        reads = read_engine(db)
        hub = EventHub(reads, poll_seconds=chosen.poll_seconds)
        worker = Worker(db, data_dir=data_dir()) if run_worker else None
        app.state.services = Services(
            engine=db,
            reads=reads,
            settings=chosen,
            hub=hub,
            keys=KeyCache(reads, chosen.key_cache_seconds),
            writes=WriteLane(db),
            worker=worker,
            machines=worker.machines if worker is not None else MachinePool(db, data_dir()),
        )
        if worker is not None:
            worker.writer.on_commit(hub.on_commit)
            await worker.start()
        hub.start()
        # Idempotency answers are kept 24 hours; drop older ones on each start.
        await asyncio.to_thread(idempotency_store.purge_expired, db)
        # What exists now (modules, the app, settings) lives as long as the
        # process: keep it out of every later full garbage collection, whose
        # pauses otherwise grow with the imported code and stall the loop.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await hub.stop()
            if worker is not None:
                await worker.stop()
            else:
                await app.state.services.machines.close()
            for machine in app.state.services.debug_machines.values():
                await machine.close()
            app.state.services.writes.close()
            if reads is not db:
                reads.dispose()
            if engine is None:
                db.dispose()

    app = FastAPI(
        title="cuaflow",
        version=_version(),
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses=_ERRORS,
        dependencies=[Depends(reject_nul_characters)],
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=chosen.max_body_bytes)
    # Reference paths under /v1/workflows/runs must win over /v1/workflows/{id}.
    app.include_router(routes_runs.router)
    app.include_router(routes_events.router)
    app.include_router(routes_workflows.router)
    app.include_router(routes_machines.router)
    app.include_router(routes_artifacts.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_secrets.router)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = importlib.resources.files("cuaflow.api").joinpath("docs.html").read_text()
        return HTMLResponse(page)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415  # once, at startup

    try:
        return version("cuaflow")
    except PackageNotFoundError:
        return "0.0.0"
