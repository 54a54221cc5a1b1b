"""The worker: claims runnable runs, keeps their leases, fires timers.

One worker runs many runs at once on one asyncio loop. It claims runs whose
``runnable_at`` has come and whose lease is free or lapsed, renews the leases
of the runs it holds on a heartbeat, and stops a run within a second when its
cancellation is requested (the heartbeat reads ``cancel_requested``). If the
worker dies, its leases lapse and another worker (or this one restarted)
claims the runs and replays them from their journals. Several worker processes
may share one database: a claim is one transaction, so a run has one owner.

On PostgreSQL the worker also listens for notifications
(:mod:`cuaflow.store.notify`): a run created, resumed or woken by a timer in
any process wakes it at once. Polling stays, so a lost notification only
delays a run by one poll.

Settings (environment variables, overridden by constructor arguments):

- ``CUAFLOW_LEASE_SECONDS``: how long a lease lasts without a heartbeat
  (default 15); after a crash, the worker's runs are taken over that much later.
- ``CUAFLOW_WORKER_POLL_SECONDS``: how often an idle worker looks for work and
  due timers (default 0.25). With notifications (PostgreSQL) polling only
  catches what a lost notification missed, so many workers may poll less.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path

import sqlalchemy as sa

from cuaflow.engine.machine_pool import MachinePool
from cuaflow.engine.runner import drive_run
from cuaflow.errors import CuaflowError, StoreError
from cuaflow.store import runs as store
from cuaflow.store.artifacts import ArtifactStore
from cuaflow.store.notify import Listener, listen, supports_notifications
from cuaflow.store.read_engine import read_engine
from cuaflow.store.writer import Writer
from cuaflow.webhooks.delivery import WebhookDeliverer

log = logging.getLogger(__name__)

ARTIFACT_SWEEP_SECONDS = 3600.0

LEASE_SECONDS_ENV = "CUAFLOW_LEASE_SECONDS"
POLL_SECONDS_ENV = "CUAFLOW_WORKER_POLL_SECONDS"
DEFAULT_LEASE_SECONDS = 15.0
DEFAULT_POLL_SECONDS = 0.25


def default_lease_seconds() -> float:
    """``CUAFLOW_LEASE_SECONDS`` if set, else 15 seconds."""
    return _seconds(LEASE_SECONDS_ENV, DEFAULT_LEASE_SECONDS)


def default_poll_seconds() -> float:
    """``CUAFLOW_WORKER_POLL_SECONDS`` if set, else a quarter of a second."""
    return _seconds(POLL_SECONDS_ENV, DEFAULT_POLL_SECONDS)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise CuaflowError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


class Worker:
    """Claims and executes runs from one database until stopped."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        data_dir: Path,
        concurrency: int = 1000,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
        heartbeat_seconds: float = 0.5,
        writer: Writer | None = None,
        notifications: bool = True,
    ) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds or default_lease_seconds()
        self.poll_seconds = poll_seconds or default_poll_seconds()
        self.heartbeat_seconds = heartbeat_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # The worker's own writer refuses writes to runs another worker took over.
        self.writer = writer or Writer(engine, owner=self.owner)
        self._own_writer = writer is None
        self._notifications = notifications and supports_notifications(engine.url)
        # The notification subscription while started on PostgreSQL (tests wait for it).
        self.listener: Listener | None = None
        self.machines = MachinePool(engine, data_dir)
        self.reader = read_engine(engine)
        self._tasks: dict[str, asyncio.Task[str]] = {}
        self._cancelling: set[str] = set()
        self._wakeup = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        # Webhook deliveries go out from their own task, so a slow receiver never delays claims.
        self.webhooks = WebhookDeliverer(engine, owner=self.owner)

    @property
    def active_runs(self) -> int:
        """How many runs this worker is executing now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Start claiming, heartbeating, firing timers and sending webhooks in the background."""
        self.writer.start()
        if self._notifications:
            # on_connect: work announced while the listener was down is found by one claim.
            self.listener = listen(
                self.engine.url, on_run_ready=lambda _run_id: self.wake(), on_connect=self.wake
            )
        self._loops = [
            asyncio.create_task(self._claim_forever(), name="cuaflow-claim"),
            asyncio.create_task(self._heartbeat_forever(), name="cuaflow-heartbeat"),
            asyncio.create_task(self.webhooks.run_forever(), name="cuaflow-webhooks"),
            asyncio.create_task(self._sweep_artifacts_forever(), name="cuaflow-artifacts"),
        ]

    async def stop(self) -> None:
        """Stop claiming; interrupt running runs (their leases lapse and they resume later)."""
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        for loop in self._loops:
            loop.cancel()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks.values(), return_exceptions=True)
        await self.machines.close()
        if self._own_writer:
            await self.writer.close()

    def wake(self) -> None:
        """Look for work now rather than at the next poll (a run was created or resumed)."""
        self._wakeup.set()

    def cancel(self, run_id: str) -> bool:
        """Stop a run this worker executes, as cancelled; False if it is not here."""
        task = self._tasks.get(run_id)
        if task is None:
            return False
        self._cancelling.add(run_id)
        task.cancel()
        return True

    async def _claim_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(store.fire_due_timers, self.engine)
                free = self.concurrency - len(self._tasks)
                if free > 0:
                    ids = await asyncio.to_thread(
                        store.claim_runs, self.engine, self.owner, free, self.lease_seconds
                    )
                    for run_id in ids:
                        if run_id not in self._tasks:
                            self._spawn(run_id)
            except StoreError:
                log.exception("claiming runs failed; trying again")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # the cancellation that stop() sends when it races the timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()

    def _spawn(self, run_id: str) -> None:
        task = asyncio.create_task(
            drive_run(
                self.engine,
                self.writer,
                run_id,
                data_dir=self.data_dir,
                pool=self.machines,
                reader=self.reader,
                cancel_requested=lambda: run_id in self._cancelling,
            ),
            name=f"cuaflow-run-{run_id}",
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._forget(run_id))

    def _forget(self, run_id: str) -> None:
        self._tasks.pop(run_id, None)
        self._cancelling.discard(run_id)
        # A run that finished or suspended frees a slot; a resumed one may be waiting.
        self._wakeup.set()

    async def _sweep_artifacts_forever(self) -> None:
        # Retention is counted in days: a sweep an hour is plenty, and cheap.
        store_of_files = ArtifactStore(self.data_dir)
        while True:
            try:
                await asyncio.to_thread(store_of_files.sweep, self.engine)
            except StoreError:
                log.exception("sweeping old artifacts failed; trying again later")
            await asyncio.sleep(ARTIFACT_SWEEP_SECONDS)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            held = list(self._tasks)
            try:
                cancelled, lost = await asyncio.to_thread(
                    store.renew_leases, self.engine, self.owner, held, self.lease_seconds
                )
            except StoreError:
                log.exception("renewing leases failed; trying again")
                continue
            for run_id in cancelled - self._cancelling:
                self.cancel(run_id)
            for run_id in lost:
                task = self._tasks.get(run_id)
                if task is not None and run_id not in self._cancelling:
                    log.warning("lost the lease of run %s; stopping it here", run_id)
                    task.cancel()
