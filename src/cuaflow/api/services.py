"""What request handlers reach: the database, its write lane, the worker, the event hub, caches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import Request

from cuaflow.api.auth import KeyCache
from cuaflow.api.event_hub import EventHub
from cuaflow.api.settings import ApiSettings
from cuaflow.api.write_lane import WriteLane
from cuaflow.dsl.models import Workflow
from cuaflow.engine.machine_pool import MachinePool
from cuaflow.machines.base import Machine
from cuaflow.worker.worker import Worker

_PARSED_LIMIT = 512


@dataclass
class Services:
    """The process-wide objects the API shares between requests."""

    engine: sa.Engine
    # Reads go here: on SQLite an engine whose reads take no write lock.
    reads: sa.Engine
    settings: ApiSettings
    hub: EventHub
    keys: KeyCache
    writes: WriteLane
    worker: Worker | None = None
    # The worker's machine pool when it runs here (so debugging a shared machine
    # waits for its lease), else one of the API's own.
    machines: MachinePool | None = None
    # Instances the machines API made to act on private machines, by tenant and id.
    debug_machines: dict[tuple[str, str], Machine] = field(default_factory=dict)
    # Saved versions never change, so a parsed version can be reused forever.
    parsed: OrderedDict[tuple[str, int], Workflow] = field(default_factory=OrderedDict)
    # The cache is used from the write lane's thread as well as the event loop.
    _parsed_lock: threading.Lock = field(default_factory=threading.Lock)

    def wake_worker(self) -> None:
        """Tell the in-process worker (if any) that a run became runnable."""
        if self.worker is not None:
            self.worker.wake()

    def remember(self, workflow_id: str, version: int, workflow: Workflow) -> None:
        """Keep a parsed workflow version for later runs of it."""
        with self._parsed_lock:
            self.parsed[(workflow_id, version)] = workflow
            self.parsed.move_to_end((workflow_id, version))
            while len(self.parsed) > _PARSED_LIMIT:
                self.parsed.popitem(last=False)

    def workflow_of(self, row: dict[str, Any]) -> Workflow:
        """The parsed workflow of a saved version's row (parsed once, then remembered)."""
        key = (str(row["id"]), int(row["version"]))
        with self._parsed_lock:
            workflow = self.parsed.get(key)
        if workflow is None:
            workflow = Workflow.model_validate(row["definition"])
            self.remember(*key, workflow)
        return workflow


async def services(request: Request) -> Services:
    """The services of the app serving ``request``.

    A coroutine on purpose: FastAPI runs plain-function dependencies in a
    thread pool, a thread hop per request for a dictionary lookup.
    """
    found: Services = request.app.state.services
    return found
