"""Registered machines: a tenant's specs, beside the built-in ones every tenant has."""

from __future__ import annotations

import re
import time
from typing import Any

import sqlalchemy as sa

from cuaflow.errors import InvalidState, Issue, NotFound, WorkflowInvalid
from cuaflow.machines.registry import MachineSpec, builtin_specs, validate_spec
from cuaflow.store import tables
from cuaflow.store.database import translate_errors

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
machines = tables.machines


def register_machine(
    engine: sa.Engine, machine_id: str, kind: str, config: dict[str, Any], *, tenant_id: str
) -> dict[str, Any]:
    """Store a machine spec (its config checked for its kind) and return it.

    Raises ``WorkflowInvalid`` for a bad id, kind or config, ``InvalidState``
    (``MACHINE_EXISTS``) when the id is taken or names a built-in machine.
    """
    if not ID_PATTERN.match(machine_id):
        raise WorkflowInvalid([Issue(("id",), "must be 1-64 letters, digits, '_' or '-'")])
    checked = validate_spec(kind, config)
    if any(spec.id == machine_id for spec in builtin_specs()):
        raise InvalidState(f"'{machine_id}' is a built-in machine", code="MACHINE_EXISTS")
    now = time.time()
    with translate_errors(), engine.begin() as conn:
        taken = conn.execute(
            sa.select(machines.c.id).where(
                machines.c.tenant_id == tenant_id, machines.c.id == machine_id
            )
        ).first()
        if taken is not None:
            raise InvalidState(f"a machine '{machine_id}' exists already", code="MACHINE_EXISTS")
        conn.execute(
            machines.insert().values(
                tenant_id=tenant_id, id=machine_id, kind=kind, config=checked, created_at=now
            )
        )
    return {"id": machine_id, "kind": kind, "config": checked, "builtin": False, "created_at": now}


def list_machines(engine: sa.Engine, *, tenant_id: str) -> list[dict[str, Any]]:
    """The built-in machines, then the tenant's own, by id."""
    found = [
        {
            "id": spec.id,
            "kind": spec.kind,
            "config": spec.config,
            "builtin": True,
            "created_at": None,
        }
        for spec in builtin_specs()
    ]
    query = sa.select(machines).where(machines.c.tenant_id == tenant_id).order_by(machines.c.id)
    with translate_errors(), engine.connect() as conn:
        for row in conn.execute(query).mappings():
            found.append({**_public(row), "builtin": False})
    return found


def get_machine_spec(engine: sa.Engine, machine_id: str, *, tenant_id: str) -> MachineSpec:
    """The spec of a built-in or registered machine; ``NotFound`` if there is none."""
    for spec in builtin_specs():
        if spec.id == machine_id:
            return spec
    query = sa.select(machines).where(
        machines.c.tenant_id == tenant_id, machines.c.id == machine_id
    )
    with translate_errors(), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no machine with id '{machine_id}'")
    return MachineSpec(row["id"], row["kind"], dict(row["config"]))


def delete_machine(engine: sa.Engine, machine_id: str, *, tenant_id: str) -> None:
    """Remove a registered machine (built-in ones cannot be removed)."""
    if any(spec.id == machine_id for spec in builtin_specs()):
        raise InvalidState(f"'{machine_id}' is a built-in machine", code="MACHINE_BUILTIN")
    with translate_errors(), engine.begin() as conn:
        deleted = conn.execute(
            machines.delete().where(machines.c.tenant_id == tenant_id, machines.c.id == machine_id)
        ).rowcount
    if not deleted:
        raise NotFound(f"no machine with id '{machine_id}'")


# Credentials should be {{secrets.NAME}} placeholders; a literal one is never shown back.
_CREDENTIALS = ("password", "client_key", "passphrase")


def _public(row: Any) -> dict[str, Any]:
    config = dict(row["config"])
    for key in _CREDENTIALS:
        value = config.get(key)
        if isinstance(value, str) and value and not value.startswith("{{"):
            config[key] = "***"
    return {"id": row["id"], "kind": row["kind"], "config": config, "created_at": row["created_at"]}
