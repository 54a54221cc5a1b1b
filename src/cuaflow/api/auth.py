"""Who is calling: the API key, its tenant, its scopes, and test mode.

A key comes in ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` (a
blank ``X-API-Key`` falls through to the bearer header). A missing, malformed,
unknown or revoked key answers 401 ``INVALID_API_KEY`` with a
``WWW-Authenticate`` challenge; a key without the route's scope answers 403
``INSUFFICIENT_SCOPE`` naming ``required_scope`` and ``current_scopes``.

Looked-up keys are cached for a few seconds (``CUAFLOW_KEY_CACHE_SECONDS``)
so a request costs no database round trip for its key; a revoked key may
therefore work for that long after ``cuaflow keys revoke``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cuaflow.api.errors import ApiError
from cuaflow.store import keys as key_store

_KEY_SHAPE = re.compile(r"^sk-cuaflow-(live|test)-[0-9a-f]{48}$")
_CACHE_LIMIT = 10_000

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from `cuaflow keys create`."
)
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    key_id: str
    tenant_id: str
    test_mode: bool
    scopes: tuple[str, ...]


class KeyCache:
    """Remembers key lookups (found or not) for ``ttl`` seconds."""

    def __init__(self, engine: sa.Engine, ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._entries: dict[str, tuple[key_store.ApiKey | None, float]] = {}

    async def lookup(self, raw: str) -> key_store.ApiKey | None:
        """The active key ``raw`` authenticates as, or None."""
        now = time.monotonic()
        cached = self._entries.get(raw)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await asyncio.to_thread(key_store.lookup_key, self._engine, raw)
        if len(self._entries) >= _CACHE_LIMIT:
            self._entries.clear()
        self._entries[raw] = (found, now + self._ttl)
        return found


def _unauthorized(message: str, suggestion: str | None = None) -> ApiError:
    return ApiError(
        401,
        "INVALID_API_KEY",
        message,
        suggestion=suggestion,
        headers={"WWW-Authenticate": "Bearer"},
    )


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the request and checks it may use ``scope``."""

    async def authenticate(
        request: Request,
        header_key: Annotated[str | None, Security(api_key_header)],
        bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        raw = (header_key or "").strip()
        if raw.lower().startswith("bearer "):
            raise _unauthorized(
                "the X-API-Key header holds 'Bearer <key>'",
                "Put the raw key in X-API-Key, or send Authorization: Bearer <key>.",
            )
        if not raw and bearer_key is not None:
            raw = bearer_key.credentials.strip()
        if not raw:
            raise _unauthorized("no API key: send X-API-Key or Authorization: Bearer")
        if not _KEY_SHAPE.match(raw):
            raise _unauthorized("the API key is malformed")
        cache: KeyCache = request.app.state.services.keys
        key = await cache.lookup(raw)
        if key is None:
            raise _unauthorized("the API key is unknown or revoked")
        principal = Principal(key.id, key.tenant_id, key.test_mode, key.scopes)
        # The middleware reads this to add X-Test-Mode to the response.
        request.state.test_mode = key.test_mode
        if scope not in key.scopes:
            raise ApiError(
                403,
                "INSUFFICIENT_SCOPE",
                f"this key lacks the '{scope}' scope",
                required_scope=scope,
                current_scopes=list(key.scopes),
            )
        return principal

    return authenticate


RunsRead = Annotated[Principal, Depends(require("runs:read"))]
RunsWrite = Annotated[Principal, Depends(require("runs:write"))]
WorkflowsRead = Annotated[Principal, Depends(require("workflows:read"))]
WorkflowsWrite = Annotated[Principal, Depends(require("workflows:write"))]
