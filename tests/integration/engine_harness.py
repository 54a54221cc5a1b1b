"""Helpers for engine tests: a real SQLite file, a real worker, runs driven to an end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.worker.worker import Worker

FINAL = store.FINISHED


class Harness:
    """A database and a worker in this event loop."""

    def __init__(self, engine: sa.Engine, data_dir: Path) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self.worker: Worker | None = None

    async def start_worker(self, **kwargs: Any) -> Worker:
        kwargs.setdefault("poll_seconds", 0.02)
        kwargs.setdefault("heartbeat_seconds", 0.2)
        self.worker = Worker(self.engine, data_dir=self.data_dir, **kwargs)
        await self.worker.start()
        return self.worker

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None

    def start(self, workflow: dict[str, Any], **options: Any) -> str:
        run = start_workflow_run(self.engine, parse_workflow(workflow), RunOptions(**options))
        if self.worker is not None:
            self.worker.wake()
        return str(run["id"])

    async def wait(
        self, run_id: str, statuses: frozenset[str] | set[str] = FINAL, timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = store.get_run(self.engine, run_id)
            if run["status"] in statuses:
                return run
            await asyncio.sleep(0.02)
        raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")

    async def run(self, workflow: dict[str, Any], **options: Any) -> dict[str, Any]:
        return await self.wait(self.start(workflow, **options))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return store.events_after(self.engine, run_id, 0, limit=100_000)

    def bindings(self, run_id: str) -> dict[str, Any]:
        journal = store.load_journal(self.engine, run_id)
        return {
            row["step_id"]: row["result"]["binding"]
            for row in sorted(journal.values(), key=lambda r: r["created_at"])
            if row["state"] == "completed"
        }


def wf(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A workflow document with these steps."""
    return {"name": "test", "steps": list(steps), **extra}


def bash(step_id: str, *commands: str, **extra: Any) -> dict[str, Any]:
    """A scripted task step running these bash commands."""
    actions = [{"type": "bash", "command": command} for command in commands]
    return {"id": step_id, "type": "task", "task": f"run {step_id}", "actions": actions, **extra}
