"""Which machine a task step gets, and who else may use it meanwhile.

Most machines are cheap and private to a run: a terminal in the run's working
directory, a browser of its own, an ssh session. They are built on first use,
kept for the run's later task steps, and closed when the run finishes.

A desktop (one Xvfb screen) or a remote browser over CDP stands for one real
screen. The pool keeps a single instance of each per tenant and id, and a task
holds the machine's lease while it runs: other tasks wait in arrival order,
and the wait shows in their run's events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from cuaflow.machines.base import Machine
from cuaflow.machines.registry import SHARED_KINDS, MachineSpec, build_machine
from cuaflow.store.machines import get_machine_spec

if TYPE_CHECKING:
    from cuaflow.engine.run_state import RunState

OnWait = Callable[[int, str | None], Awaitable[None]]


class MachinePool:
    """The machines one worker process drives."""

    def __init__(self, engine: sa.Engine, data_dir: Path) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self._shared: dict[tuple[str, str], Machine] = {}

    async def spec(self, tenant_id: str, machine_id: str) -> MachineSpec:
        """The stored or built-in spec of ``machine_id``; ``NotFound`` if none."""
        return await asyncio.to_thread(
            get_machine_spec, self.engine, machine_id, tenant_id=tenant_id
        )

    def shared(self, tenant_id: str, spec: MachineSpec) -> Machine:
        """The one instance of a shared machine (built on first use)."""
        key = (tenant_id, spec.id)
        machine = self._shared.get(key)
        if machine is None:
            workdir = self.data_dir / "machines" / tenant_id / spec.id
            machine = build_machine(spec, workdir=workdir)
            self._shared[key] = machine
        return machine

    @contextlib.asynccontextmanager
    async def use(
        self, state: RunState, machine_id: str, on_wait: OnWait
    ) -> AsyncIterator[Machine]:
        """The machine for one task of ``state``'s run, leased for the task if shared."""
        tenant_id = str(state.run["tenant_id"])
        private = state.machines.get(machine_id)
        if private is not None:
            yield private
            return
        spec = await self.spec(tenant_id, machine_id)
        if spec.kind in SHARED_KINDS:
            machine = self.shared(tenant_id, spec)
            lease = machine.lease  # type: ignore[attr-defined]  # shared kinds all carry one
            async with lease.hold(state.run_id, on_wait=on_wait):
                yield machine
            return
        machine = build_machine(spec, workdir=state.workdir, secrets=state.secrets)
        state.machines[machine_id] = machine
        yield machine

    async def close(self) -> None:
        """Close the shared machines (the worker is stopping)."""
        machines, self._shared = list(self._shared.values()), {}
        for machine in machines:
            with contextlib.suppress(Exception):
                await machine.close()
