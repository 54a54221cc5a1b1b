"""``cuaflow keys create|list|revoke``: API keys, shown once and stored as hashes."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", envvar="CUAFLOW_DATABASE_URL", help="The database (default: SQLite)."
    ),
]


@keys_app.command("create")
def create(
    test: Annotated[
        bool, typer.Option("--test", help="A test-mode key: simulated agent, free.")
    ] = False,
    tenant: Annotated[str, typer.Option(help="The tenant the key belongs to.")] = "default",
    scopes: Annotated[
        list[str] | None,
        typer.Option(help="Scopes, comma-separated or repeated (default: all of them)."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from cuaflow.store.database import open_database  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.keys import create_key  # noqa: PLC0415

    chosen = [part.strip() for item in scopes or [] for part in item.split(",") if part.strip()]
    try:
        raw, key = create_key(
            open_database(database_url),
            tenant_id=tenant,
            test_mode=test,
            scopes=chosen or None,
        )
    except ValueError as exc:
        errors.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    console.print(raw, highlight=False, soft_wrap=True)
    errors.print(
        f"key {key.id} · tenant {key.tenant_id} · {'test' if key.test_mode else 'live'} · "
        f"scopes {' '.join(key.scopes)}\nThis is the only time the key is shown; store it now.",
        highlight=False,
    )


@keys_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List keys (their ids and shown prefixes, never the secrets)."""
    from cuaflow.store.database import open_database  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.keys import list_keys  # noqa: PLC0415

    # One tab-separated line per key, so the list can be read by scripts too.
    typer.echo("\t".join(("id", "prefix", "tenant", "mode", "scopes", "created", "revoked")))
    for key in list_keys(open_database(database_url), include_revoked=all_):
        fields = (
            key.id,
            key.prefix + "...",
            key.tenant_id,
            "test" if key.test_mode else "live",
            ",".join(key.scopes),
            _when(key.created_at),
            _when(key.revoked_at) if key.revoked_at else "-",
        )
        typer.echo("\t".join(fields))


@keys_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id (key_...) or its shown prefix.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key; servers stop accepting it within a few seconds."""
    from cuaflow.errors import NotFound  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.database import open_database  # noqa: PLC0415
    from cuaflow.store.keys import revoke_key  # noqa: PLC0415

    try:
        revoked = revoke_key(open_database(database_url), key)
    except NotFound as exc:
        errors.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"revoked {revoked.id} ({revoked.prefix}...)", highlight=False)


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else ""
