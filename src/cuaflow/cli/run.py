"""``cuaflow run``: run a workflow file on the embedded default and watch it live."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer
from rich.console import Console

from cuaflow.cli.progress import ProgressView
from cuaflow.config import data_dir
from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, inputs_from_pairs, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store.database import open_database
from cuaflow.worker.worker import Worker

POLL_SECONDS = 0.05


async def run_workflow(
    path: Path,
    pairs: list[str],
    *,
    decision: bool | None,
    options: dict[str, Any],
    console: Console,
) -> int:
    """Start a run of the workflow at ``path``, show it, answer approvals; return the exit code."""
    workflow = parse_workflow(path.read_bytes())
    run_options = RunOptions(inputs=inputs_from_pairs(pairs), **options)
    engine = open_database()
    run = start_workflow_run(engine, workflow, run_options)
    console.print(f"[bold]{workflow.name}[/] · run [cyan]{run['id']}[/]", highlight=False)
    worker = Worker(engine, data_dir=data_dir(), poll_seconds=POLL_SECONDS)
    await worker.start()
    view = ProgressView(console)
    try:
        final = await _follow(engine, run["id"], view, worker, decision, console)
    except asyncio.CancelledError:
        await asyncio.to_thread(_cancel, engine, run["id"])
        raise
    finally:
        await worker.stop()
    if final is None:
        return 3
    view.summary(final)
    return 0 if final["status"] == "succeeded" else 1


async def _follow(
    engine: sa.Engine,
    run_id: str,
    view: ProgressView,
    worker: Worker,
    decision: bool | None,
    console: Console,
) -> dict[str, Any] | None:
    seq = 0
    while True:
        events = await asyncio.to_thread(store.events_after, engine, run_id, seq)
        for event in events:
            seq = event["seq"]
            view.show(event)
            if event["type"] == "awaiting_human":
                answer = _ask(event["data"], decision, console)
                if answer is None:
                    console.print(
                        f"[magenta]The run waits for a human.[/] Answer later with "
                        f"`cuaflow resume {run_id} --approve` (or --reject).",
                        highlight=False,
                    )
                    return None
                approved, note = answer
                await asyncio.to_thread(
                    store.resume_run, engine, run_id, approved=approved, note=note
                )
                worker.wake()
            if event["type"] == "done":
                return await asyncio.to_thread(store.get_run, engine, run_id)
        await asyncio.sleep(POLL_SECONDS)


def _ask(
    waiting: dict[str, Any], decision: bool | None, console: Console
) -> tuple[bool, str | None] | None:
    if decision is not None:
        return decision, "answered by --approve" if decision else "answered by --reject"
    if not sys.stdin.isatty():
        return None
    approved = typer.confirm(f"Approve '{waiting['step_id']}'?", default=True)
    note = typer.prompt("Note (optional)", default="", show_default=False)
    return approved, note or None


def _cancel(engine: sa.Engine, run_id: str) -> None:
    with contextlib.suppress(Exception):
        store.request_cancel(engine, run_id)
