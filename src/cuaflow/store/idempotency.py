"""Idempotency keys: the first answer to a creating request, kept so a retry gets it again.

A request with an ``Idempotency-Key`` first *reserves* the key (a row with
status code 0) before it creates anything, so two concurrent requests with one
key cannot both create: the second sees the reservation and waits for the
first answer. The answer is then stored with the hash of the request that
produced it. Records live for 24 hours; a reservation whose request never
finished (the process died) is taken over after ``STALE_RESERVATION_SECONDS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cuaflow.store import tables
from cuaflow.store.database import translate_errors

RETENTION_SECONDS = 24 * 3600
STALE_RESERVATION_SECONDS = 60.0
PENDING = 0
_idem = tables.idempotency


@dataclass(frozen=True)
class IdempotencyRecord:
    """A reserved or answered key."""

    request_hash: str
    status_code: int
    response: dict[str, Any]
    created_at: float

    @property
    def pending(self) -> bool:
        """Whether the request that reserved the key is still working on it."""
        return self.status_code == PENDING


def reserve(
    engine: sa.Engine, tenant_id: str, key: str, request_hash: str
) -> IdempotencyRecord | None:
    """Reserve ``key`` for a new request; None if reserved now, else the record already there."""
    now = time.time()
    where = sa.and_(_idem.c.tenant_id == tenant_id, _idem.c.key == key)
    try:
        with translate_errors(), engine.begin() as conn:
            row = conn.execute(sa.select(_idem).where(where).with_for_update()).mappings().first()
            if row is not None and not _expired(row, now):
                return _record(row)
            if row is not None:
                conn.execute(_idem.delete().where(where))
            conn.execute(
                _idem.insert().values(
                    tenant_id=tenant_id,
                    key=key,
                    request_hash=request_hash,
                    response={},
                    status_code=PENDING,
                    created_at=now,
                )
            )
            return None
    except IntegrityError:
        # Another process reserved it between our read and our insert.
        return get(engine, tenant_id, key)


def complete(
    engine: sa.Engine, tenant_id: str, key: str, status_code: int, response: dict[str, Any]
) -> None:
    """Store the answer of the request that reserved ``key``."""
    with translate_errors(), engine.begin() as conn:
        conn.execute(
            _idem.update()
            .where(_idem.c.tenant_id == tenant_id, _idem.c.key == key)
            .values(status_code=status_code, response=response)
        )


def release(engine: sa.Engine, tenant_id: str, key: str) -> None:
    """Drop a reservation whose request created nothing, so the key can be used again."""
    with translate_errors(), engine.begin() as conn:
        conn.execute(
            _idem.delete().where(
                _idem.c.tenant_id == tenant_id,
                _idem.c.key == key,
                _idem.c.status_code == PENDING,
            )
        )


def get(engine: sa.Engine, tenant_id: str, key: str) -> IdempotencyRecord | None:
    """The live record of ``key``, if any."""
    query = sa.select(_idem).where(_idem.c.tenant_id == tenant_id, _idem.c.key == key)
    with translate_errors(), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None or _expired(row, time.time()):
        return None
    return _record(row)


def purge_expired(engine: sa.Engine) -> int:
    """Delete records older than the retention period; return how many."""
    cutoff = time.time() - RETENTION_SECONDS
    with translate_errors(), engine.begin() as conn:
        return int(conn.execute(_idem.delete().where(_idem.c.created_at < cutoff)).rowcount)


def _expired(row: sa.RowMapping, now: float) -> bool:
    age = now - float(row["created_at"])
    if row["status_code"] == PENDING:
        return age > STALE_RESERVATION_SECONDS
    return age > RETENTION_SECONDS


def _record(row: sa.RowMapping) -> IdempotencyRecord:
    response = row["response"]
    return IdempotencyRecord(
        request_hash=str(row["request_hash"]),
        status_code=int(row["status_code"]),
        response=dict(response) if isinstance(response, dict) else {},
        created_at=float(row["created_at"]),
    )
