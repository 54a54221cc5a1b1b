"""The in-memory state of one executing run, rebuilt from the store on every claim."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cuaflow.dsl import models as m
from cuaflow.engine.machine_pool import MachinePool
from cuaflow.engine.outcomes import RunEnded
from cuaflow.machines.base import Machine
from cuaflow.store.writer import UnitOfWork, Writer

# Cents per billed agent step, by cua_version.
STEP_PRICE_CENTS = {"v1": 8, "v3": 5, "v4": 5}


@dataclass
class RunState:
    """Everything the interpreter knows about a run while it executes it."""

    run: dict[str, Any]
    workflow: m.Workflow
    journal: dict[str, dict[str, Any]]
    signals: dict[str, dict[str, Any]]
    writer: Writer
    workdir: Path
    pool: MachinePool
    secrets: dict[str, str] = field(default_factory=dict)
    bindings: dict[str, Any] = field(default_factory=dict)
    machines: dict[str, Machine] = field(default_factory=dict)
    iterations: int = 0
    current_step_id: str | None = None
    _last_write: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.spent_cents: int = self.run["spent_cents"]
        self.steps_completed: int = self.run["steps_completed"]

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.run["id"])

    @property
    def params(self) -> dict[str, Any]:
        """The options the run was started with (machine_id, cua_version, ...)."""
        return dict(self.run["params"] or {})

    @property
    def guards(self) -> dict[str, Any]:
        """The run's effective guards."""
        return dict(self.run["guards"] or {})

    @property
    def test_mode(self) -> bool:
        """Whether the run was started with a test-mode key (free, simulated)."""
        return bool(self.run["test_mode"])

    def template_context(self, variables: dict[str, Any]) -> dict[str, Any]:
        """The names templates can use at this point of the run."""
        # Secrets render as their placeholders; naming one that is not set is an error.
        return {
            **self.bindings,
            "inputs": self.run["inputs"] or {},
            "vars": variables,
            "secrets": self.secrets,
        }

    def bind(self, step: m.Step, binding: dict[str, Any]) -> None:
        """Make a step's result visible to later templates (under its id and save_as)."""
        self.bindings[step.id] = binding
        if step.save_as:
            self.bindings[step.save_as] = binding

    def submit(self, unit: UnitOfWork) -> asyncio.Future[None]:
        """Queue a unit of work; ``flush`` waits for it and all before it."""
        self._last_write = self.writer.submit(unit)
        return self._last_write

    async def flush(self) -> None:
        """Wait until everything this run queued is committed."""
        if self._last_write is not None:
            await self._last_write

    def count_iteration(self, step_id: str) -> None:
        """Count one loop iteration against the run's ``max_iterations`` guard."""
        self.iterations += 1
        limit = self.guards.get("max_iterations")
        if limit is not None and self.iterations > limit:
            raise RunEnded(
                "failed",
                error={
                    "code": "GUARD_EXCEEDED",
                    "message": f"the run exceeded its max_iterations guard ({limit})",
                    "step_id": step_id,
                    "guard": "max_iterations",
                },
            )

    def price(self, cua_version: str) -> int:
        """Cents for one agent step at ``cua_version`` (free in test mode)."""
        return 0 if self.test_mode else STEP_PRICE_CENTS.get(cua_version, 5)

    def check_budget(self, cents: int, step_id: str) -> None:
        """Refuse an agent step that would take spending past ``budget_cents``."""
        budget = self.guards.get("budget_cents")
        if budget is not None and self.spent_cents + cents > budget:
            raise RunEnded(
                "failed",
                error={
                    "code": "GUARD_EXCEEDED",
                    "message": (
                        f"the next agent step would cost {cents} cents; "
                        f"{self.spent_cents} of the {budget}-cent budget is spent"
                    ),
                    "step_id": step_id,
                    "guard": "budget_cents",
                },
            )

    def check_deadline(self, step_id: str | None = None) -> None:
        """End the run as timed out once its deadline has passed."""
        deadline_at = self.run.get("deadline_at")
        if deadline_at is not None and time.time() >= deadline_at:
            raise RunEnded("timed_out", error=deadline_error(self.guards, step_id))


def deadline_error(guards: dict[str, Any], step_id: str | None) -> dict[str, Any]:
    """The error of a run that ran past its ``deadline_seconds``."""
    error: dict[str, Any] = {
        "code": "DEADLINE_EXCEEDED",
        "message": f"the run passed its deadline of {guards.get('deadline_seconds')} seconds",
    }
    if step_id is not None:
        error["step_id"] = step_id
    return error
