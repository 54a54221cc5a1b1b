"""Tenant-scoped secrets, encrypted at rest.

Values are stored as Fernet tokens (AES-128-CBC with an HMAC-SHA256 tag). The
key is never in the database: it comes from ``CUAFLOW_SECRET_KEY`` (a Fernet
key: 32 url-safe base64-encoded bytes) or, by default, from the file
``<data dir>/secret.key``, created with mode 0600 on first use. Losing the key
makes the stored secrets unreadable; rotating it means setting them again.

Secrets reach a run only as ``{{secrets.NAME}}`` placeholders; the machine
driver substitutes the value at the moment it types or runs it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from cuaflow.errors import Issue, NotFound, StoreError, WorkflowInvalid
from cuaflow.store import tables
from cuaflow.store.database import DATA_DIR_ENV, DEFAULT_DATA_DIR, translate_errors

SECRET_KEY_ENV = "CUAFLOW_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_VALUE_BYTES = 64 * 1024
secrets = tables.secrets


def _fernet() -> Fernet:
    key = os.environ.get(SECRET_KEY_ENV)
    if not key:
        path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / KEY_FILE_NAME
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key())
        key = path.read_text().strip()
    try:
        return Fernet(key)
    except ValueError:
        raise StoreError(
            f"{SECRET_KEY_ENV} (or {KEY_FILE_NAME}) is not a Fernet key: 32 url-safe base64 bytes"
        ) from None


def _check(name: str, value: str) -> None:
    issues = []
    if not NAME_PATTERN.match(name):
        issues.append(Issue(("name",), "must be 1-128 letters, digits, '_' or '-'"))
    if len(value.encode()) > MAX_VALUE_BYTES:
        issues.append(Issue(("value",), f"must be at most {MAX_VALUE_BYTES} bytes"))
    if issues:
        raise WorkflowInvalid(issues)


def set_secret(engine: sa.Engine, name: str, value: str, *, tenant_id: str = "default") -> None:
    """Create or replace a secret."""
    _check(name, value)
    token = _fernet().encrypt(value.encode()).decode()
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        updated = conn.execute(
            secrets.update()
            .where(secrets.c.tenant_id == tenant_id, secrets.c.name == name)
            .values(ciphertext=token, updated_at=now)
        ).rowcount
        if not updated:
            conn.execute(
                secrets.insert().values(
                    tenant_id=tenant_id, name=name, ciphertext=token, created_at=now, updated_at=now
                )
            )


def list_secrets(engine: sa.Engine, *, tenant_id: str = "default") -> list[dict[str, object]]:
    """The tenant's secrets by name, without their values."""
    query = (
        sa.select(secrets.c.name, secrets.c.created_at, secrets.c.updated_at)
        .where(secrets.c.tenant_id == tenant_id)
        .order_by(secrets.c.name)
    )
    with translate_errors(), engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def delete_secret(engine: sa.Engine, name: str, *, tenant_id: str = "default") -> None:
    """Delete a secret; ``NotFound`` if there is none of that name."""
    with translate_errors(), engine.begin() as conn:
        deleted = conn.execute(
            secrets.delete().where(secrets.c.tenant_id == tenant_id, secrets.c.name == name)
        ).rowcount
    if not deleted:
        raise NotFound(f"no secret named '{name}'")


def load_secrets(engine: sa.Engine, tenant_id: str) -> dict[str, str]:
    """Every secret of a tenant, decrypted, for the machine driver of one run."""
    query = sa.select(secrets.c.name, secrets.c.ciphertext).where(secrets.c.tenant_id == tenant_id)
    with translate_errors(), engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return {}
    fernet = _fernet()
    values = {}
    for name, token in rows:
        try:
            values[name] = fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise StoreError(
                f"secret '{name}' cannot be decrypted with the current key; set it again"
            ) from None
    return values
