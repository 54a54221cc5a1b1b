"""The ``cuaflow`` command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cuaflow.cli.keys import keys_app
from cuaflow.cli.secrets import app as secrets_app
from cuaflow.errors import CuaflowError, WorkflowInvalid

app = typer.Typer(
    help="cuaflow: durable workflows for computer-use agents.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


def _report_invalid(source: str, exc: WorkflowInvalid) -> None:
    errors.print(f"[red]✗ {source}[/]: {len(exc.issues)} problem(s)", highlight=False)
    for issue in exc.issues:
        where = "/".join(str(part) for part in issue.loc) or "(document)"
        errors.print(f"  [bold]{where}[/]: {issue.msg}", highlight=False, markup=True)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow JSON files to check.")],
) -> None:
    """Check workflow files; print each problem with its JSON location.

    Exits 0 when every file is valid, 1 when any is not.
    """
    from cuaflow.dsl.parse import parse_workflow  # noqa: PLC0415  # keep --help fast

    failed = False
    for path in files:
        try:
            parse_workflow(path.read_bytes())
        except WorkflowInvalid as exc:
            failed = True
            _report_invalid(str(path), exc)
        except OSError as exc:
            failed = True
            errors.print(f"[red]✗ {path}[/]: cannot read: {exc.strerror}", highlight=False)
        else:
            console.print(f"[green]✓ {path}[/]", highlight=False)
    raise typer.Exit(1 if failed else 0)


@app.command()
def schema() -> None:
    """Print the JSON Schema of workflow documents (for editors and linters)."""
    from cuaflow.dsl.schema import workflow_json_schema  # noqa: PLC0415  # keep --help fast

    typer.echo(json.dumps(workflow_json_schema(), indent=2))


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The workflow JSON file to run.")],
    input_: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input as key=value (JSON values are parsed)."),
    ] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Approve every human_approval step.")
    ] = False,
    reject: Annotated[
        bool, typer.Option("--reject", help="Reject every human_approval step.")
    ] = False,
    budget_cents: Annotated[int | None, typer.Option(help="Override the budget guard.")] = None,
    deadline_seconds: Annotated[
        int | None, typer.Option(help="Override the deadline guard.")
    ] = None,
    max_iterations: Annotated[
        int | None, typer.Option(help="Override the max_iterations guard.")
    ] = None,
) -> None:
    """Run a workflow on the embedded default (SQLite, local terminal) and watch it live.

    Asks in the terminal at each human_approval step unless --approve or
    --reject is given. Exits 0 when the run succeeds, 1 when it ends otherwise,
    2 on invalid input, 3 when it is left waiting for a human.
    """
    from cuaflow.cli.run import run_workflow  # noqa: PLC0415  # keep --help fast

    if approve and reject:
        raise typer.BadParameter("give --approve or --reject, not both")
    options: dict[str, Any] = {
        "budget_cents": budget_cents,
        "deadline_seconds": deadline_seconds,
        "max_iterations": max_iterations,
    }
    decision = True if approve else False if reject else None
    try:
        code = asyncio.run(
            run_workflow(file, input_ or [], decision=decision, options=options, console=console)
        )
    except WorkflowInvalid as exc:
        _report_invalid(str(file), exc)
        raise typer.Exit(2) from None
    except CuaflowError as exc:
        errors.print(f"[red]{exc.code}[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        errors.print(f"[red]cannot read {file}[/]: {exc.strerror}", highlight=False)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run waiting for a human.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    approve: Annotated[bool, typer.Option("--approve", help="Approve (the default).")] = True,
    note: Annotated[str | None, typer.Option(help="A note for the record.")] = None,
) -> None:
    """Answer the approval a run waits for; a worker (`cuaflow run`/`serve`) continues it."""
    from cuaflow.store.database import open_database  # noqa: PLC0415  # keep --help fast
    from cuaflow.store.runs import resume_run  # noqa: PLC0415

    try:
        resume_run(open_database(), run_id, approved=approve and not reject, note=note)
    except CuaflowError as exc:
        errors.print(f"[red]{exc.code}[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"run {run_id} {'rejected' if reject else 'approved'}", highlight=False)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="How many runs to execute at once.")] = 1000,
    lease_seconds: Annotated[
        float,
        typer.Option(
            envvar="CUAFLOW_LEASE_SECONDS",
            help="How long a claimed run stays this worker's without a heartbeat; "
            "after a crash, other workers take its runs over once it lapses.",
        ),
    ] = 15.0,
) -> None:
    """Run a worker until interrupted: it executes queued and resumed runs and fires timers."""
    from cuaflow.cli.worker import run_worker  # noqa: PLC0415  # keep --help fast

    try:
        asyncio.run(run_worker(concurrency, lease_seconds, console))
    except KeyboardInterrupt:
        console.print("worker stopped")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="CUAFLOW_HOST", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CUAFLOW_PORT", help="The port to listen on.")] = 8000,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="CUAFLOW_DATABASE_URL",
            help="The database (default: SQLite in ./cuaflow-data, or CUAFLOW_DATA_DIR).",
        ),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run workers elsewhere.")
    ] = False,
) -> None:
    """Serve the HTTP API (and a worker, unless --no-worker) until interrupted."""
    from cuaflow.cli.serve import run_server  # noqa: PLC0415  # keep --help fast

    try:
        run_server(host, port, database_url, worker=not no_worker, console=console)
    except CuaflowError as exc:
        errors.print(f"[red]{exc.code}[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None


app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
