"""API keys: created once and shown once, stored only as a SHA-256 hash, looked up per request.

A raw key is ``sk-cuaflow-live-`` or ``sk-cuaflow-test-`` followed by 48 hex
digits (192 random bits). Because the key itself is long and random, a plain
SHA-256 of it is as safe to store as a slow password hash would be, and it can
be found with one indexed lookup. The first 24 characters are kept in the clear
(``prefix``) so that ``cuaflow keys list`` can show which key is which.

Every key belongs to one tenant and carries a list of scopes; a test-mode key
starts runs that use the simulated machine and agent and cost nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cuaflow.errors import NotFound
from cuaflow.store import tables
from cuaflow.store.database import translate_errors
from cuaflow.store.runs import new_id

LIVE_PREFIX = "sk-cuaflow-live-"
TEST_PREFIX = "sk-cuaflow-test-"
ALL_SCOPES = (
    "runs:read",
    "runs:write",
    "workflows:read",
    "workflows:write",
    "machines:read",
    "machines:write",
)
DEFAULT_TENANT = "default"
SHOWN_PREFIX_CHARS = 24
_keys = tables.api_keys


@dataclass(frozen=True)
class ApiKey:
    """A stored key: everything but the secret itself."""

    id: str
    tenant_id: str
    prefix: str
    test_mode: bool
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None


def hash_key(raw: str) -> str:
    """The stored form of a raw key."""
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(
    engine: sa.Engine,
    *,
    tenant_id: str = DEFAULT_TENANT,
    test_mode: bool = False,
    scopes: Iterable[str] | None = None,
) -> tuple[str, ApiKey]:
    """Create a key; return the raw key (never stored, show it once) and its record.

    Raises ``ValueError`` for an unknown scope or an empty tenant.
    """
    chosen = tuple(dict.fromkeys(scopes)) if scopes is not None else ALL_SCOPES
    unknown = [scope for scope in chosen if scope not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    if not tenant_id.strip():
        raise ValueError("the tenant must not be empty")
    raw = (TEST_PREFIX if test_mode else LIVE_PREFIX) + secrets.token_hex(24)
    key = ApiKey(
        id=new_id("key_"),
        tenant_id=tenant_id,
        prefix=raw[:SHOWN_PREFIX_CHARS],
        test_mode=test_mode,
        scopes=chosen,
        created_at=time.time(),
    )
    row = {
        "id": key.id,
        "tenant_id": key.tenant_id,
        "key_hash": hash_key(raw),
        "prefix": key.prefix,
        "test_mode": key.test_mode,
        "scopes": list(key.scopes),
        "created_at": key.created_at,
    }
    with translate_errors(), engine.begin() as conn:
        conn.execute(_keys.insert().values(row))
    return raw, key


def lookup_key(engine: sa.Engine, raw: str) -> ApiKey | None:
    """The active key whose secret is ``raw``, or None."""
    query = sa.select(_keys).where(_keys.c.key_hash == hash_key(raw), _keys.c.revoked_at.is_(None))
    with translate_errors(), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _key(row) if row is not None else None


def list_keys(engine: sa.Engine, *, include_revoked: bool = False) -> list[ApiKey]:
    """Every key, oldest first."""
    query = sa.select(_keys).order_by(_keys.c.created_at, _keys.c.id)
    if not include_revoked:
        query = query.where(_keys.c.revoked_at.is_(None))
    with translate_errors(), engine.connect() as conn:
        return [_key(row) for row in conn.execute(query).mappings()]


def revoke_key(engine: sa.Engine, key_id_or_prefix: str) -> ApiKey:
    """Revoke a key named by its id or its shown prefix; ``NotFound`` if none matches."""
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        matches = (
            conn.execute(
                sa.select(_keys).where(
                    sa.or_(_keys.c.id == key_id_or_prefix, _keys.c.prefix == key_id_or_prefix)
                )
            )
            .mappings()
            .all()
        )
        if len(matches) != 1:
            raise NotFound(f"no single key with id or prefix '{key_id_or_prefix}'")
        row = dict(matches[0])
        if row["revoked_at"] is None:
            conn.execute(_keys.update().where(_keys.c.id == row["id"]).values(revoked_at=now))
            row["revoked_at"] = now
    return _key(row)


def count_active_keys(engine: sa.Engine) -> int:
    """How many keys can authenticate now."""
    query = sa.select(sa.func.count()).select_from(_keys).where(_keys.c.revoked_at.is_(None))
    with translate_errors(), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _key(row: sa.RowMapping | dict[str, Any]) -> ApiKey:
    revoked = row["revoked_at"]
    scopes = row["scopes"]
    return ApiKey(
        id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        prefix=str(row["prefix"]),
        test_mode=bool(row["test_mode"]),
        scopes=tuple(str(scope) for scope in scopes) if isinstance(scopes, list) else (),
        created_at=float(row["created_at"]),
        revoked_at=float(revoked) if revoked is not None else None,
    )
