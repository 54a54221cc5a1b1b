"""``cuaflow secrets``: set, list and delete the secrets runs can type."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from cuaflow.errors import CuaflowError, WorkflowInvalid

app = typer.Typer(help="Secrets that task steps use as {{secrets.NAME}}; values never show.")
console = Console()
errors = Console(stderr=True)
Tenant = Annotated[str, typer.Option(help="The tenant the secret belongs to.")]


def _fail(exc: CuaflowError) -> None:
    detail = (
        "; ".join(str(issue) for issue in exc.issues) if isinstance(exc, WorkflowInvalid) else exc
    )
    errors.print(f"[red]{exc.code}[/]: {detail}", highlight=False)
    raise typer.Exit(1)


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="The secret's name, as in {{secrets.NAME}}.")],
    tenant: Tenant = "default",
) -> None:
    """Set a secret; its value is read from standard input (or asked for, hidden)."""
    from cuaflow.store.database import open_database  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.secrets import set_secret  # noqa: PLC0415

    if sys.stdin.isatty():
        value = typer.prompt(f"Value of {name}", hide_input=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    try:
        set_secret(open_database(), name, value, tenant_id=tenant)
    except CuaflowError as exc:
        _fail(exc)
    console.print(f"secret {name} set", highlight=False)


@app.command("list")
def list_(tenant: Tenant = "default") -> None:
    """List the secrets' names (never their values)."""
    from cuaflow.store.database import open_database  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.secrets import list_secrets  # noqa: PLC0415

    for row in list_secrets(open_database(), tenant_id=tenant):
        console.print(str(row["name"]), highlight=False)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The secret to delete.")],
    tenant: Tenant = "default",
) -> None:
    """Delete a secret."""
    from cuaflow.store.database import open_database  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.secrets import delete_secret  # noqa: PLC0415

    try:
        delete_secret(open_database(), name, tenant_id=tenant)
    except CuaflowError as exc:
        _fail(exc)
    console.print(f"secret {name} deleted", highlight=False)
