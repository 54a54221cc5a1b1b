"""``Idempotency-Key`` on creating POSTs: a retried request gets the first answer.

The key (up to 128 of ``[A-Za-z0-9_-:]``) is scoped to the tenant and to the
request: the hash covers the method, the path and the JSON body (key order and
whitespace do not matter). Same key and same request: the stored answer, with
``Idempotent-Replay: true``. Same key, another request: 422
``IDEMPOTENCY_KEY_REUSED``. A request that fails before creating anything (a
validation error, say) stores nothing, so the key stays usable. A duplicate
that arrives while the first is still running waits for its answer (up to
``WAIT_SECONDS``, then 409 ``IDEMPOTENCY_KEY_IN_USE``). Answers are kept in the
database for 24 hours, so they survive a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from cuaflow.api.errors import ApiError, validation_error
from cuaflow.api.services import Services
from cuaflow.errors import Issue
from cuaflow.store import idempotency as store

HEADER = "Idempotency-Key"
WAIT_SECONDS = 10.0
_KEY = re.compile(r"^[A-Za-z0-9_\-:]{1,128}$")
_REPLAY_HEADERS = {"Idempotent-Replay": "true", "X-Coasty-Idempotent-Replay": "true"}

Creator = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


async def idempotent(
    request: Request, services: Services, tenant_id: str, create: Creator
) -> JSONResponse:
    """Answer ``create()``'s result, or the stored answer to an earlier identical request."""
    key = request.headers.get(HEADER)
    if key is None:
        status, body = await create()
        return JSONResponse(body, status)
    if not _KEY.match(key):
        raise validation_error(
            [Issue(("header", HEADER), "must be 1-128 characters of A-Z a-z 0-9 _ - :")]
        )
    digest = await _request_hash(request)
    lane = services.writes
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        record = await lane.run(lambda db: store.reserve(db, tenant_id, key, digest))
        if record is None:
            break
        if record.request_hash != digest:
            raise ApiError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                f"the Idempotency-Key '{key}' was used with a different request",
            )
        if not record.pending:
            return JSONResponse(record.response, record.status_code, headers=_REPLAY_HEADERS)
        if time.monotonic() > deadline:
            raise ApiError(
                409, "IDEMPOTENCY_KEY_IN_USE", f"a request with key '{key}' is still running"
            )
        await asyncio.sleep(0.05)
    try:
        status, body = await create()
    except BaseException:
        await asyncio.shield(lane.run(lambda db: store.release(db, tenant_id, key)))
        raise
    await lane.run(lambda db: store.complete(db, tenant_id, key, status, body))
    return JSONResponse(body, status)


async def _request_hash(request: Request) -> str:
    raw = await request.body()
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = raw
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()
