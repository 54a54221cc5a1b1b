"""What request handlers reach: the database, the worker, the event hub, settings, caches."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi import Request

from cuaflow.api.auth import KeyCache
from cuaflow.api.event_hub import EventHub
from cuaflow.api.settings import ApiSettings
from cuaflow.dsl.models import Workflow
from cuaflow.worker.worker import Worker

_PARSED_LIMIT = 512


@dataclass
class Services:
    """The process-wide objects the API shares between requests."""

    engine: sa.Engine
    settings: ApiSettings
    hub: EventHub
    keys: KeyCache
    worker: Worker | None = None
    # Saved versions never change, so a parsed version can be reused forever.
    parsed: OrderedDict[tuple[str, int], Workflow] = field(default_factory=OrderedDict)

    def wake_worker(self) -> None:
        """Tell the in-process worker (if any) that a run became runnable."""
        if self.worker is not None:
            self.worker.wake()

    def remember(self, workflow_id: str, version: int, workflow: Workflow) -> None:
        """Keep a parsed workflow version for later runs of it."""
        self.parsed[(workflow_id, version)] = workflow
        self.parsed.move_to_end((workflow_id, version))
        while len(self.parsed) > _PARSED_LIMIT:
            self.parsed.popitem(last=False)


def services(request: Request) -> Services:
    """The services of the app serving ``request``."""
    found: Services = request.app.state.services
    return found
