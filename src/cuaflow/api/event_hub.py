"""Live delivery of run events to the process's event streams.

The events table is the only source of events: a stream replays it from its
cursor and then waits to be woken, and on waking reads what is new. The hub
decides when to wake whom, and serves those reads in batches:

- **Wakes.** The in-process worker's :class:`~cuaflow.store.writer.Writer`
  calls :meth:`EventHub.on_commit` on the event loop after each commit with
  ``[(run_id, last_seq)]``, so streams of this process's runs wake at once.
  Writes the API makes itself (a new run, a resume, a cancel) call
  :meth:`EventHub.poke`. For events other processes write (a separate worker,
  another API replica, the CLI), *one* poller task for the whole process reads
  ``last_seq`` and ``status`` of every run that has a subscriber every
  ``poll_seconds`` and wakes the streams of runs that moved. On PostgreSQL
  the hub also listens for the ``cuaflow_events`` notification every commit
  sends (:mod:`cuaflow.store.notify`), so streams on every replica wake
  within milliseconds; the poller remains the fallback.
- **Reads.** Reads that arrive while one is in flight are gathered and done
  together on one connection in one worker thread (:meth:`EventHub.read`), so
  a commit that wakes hundreds of streams costs a few round trips, not
  hundreds.

Nothing is queued per client: a stream reads only when it is ready to send,
so a slow client holds at most one batch in memory and never slows the engine
(the writer's callback only sets flags).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa

from cuaflow.errors import StoreError
from cuaflow.store.notify import Listener, listen, supports_notifications
from cuaflow.store.run_queries import events_after_many, last_seqs
from cuaflow.store.runs import FINISHED

log = logging.getLogger(__name__)

READ_LIMIT = 500
_BATCH_LIMIT = 2000


class Subscription:
    """One stream's interest in one run: a flag the hub sets when there may be news."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.wake = asyncio.Event()
        self.finished = False


class EventHub:
    """Wakes event streams when their run has new events, and batches their reads."""

    def __init__(self, engine: sa.Engine, *, poll_seconds: float = 0.1) -> None:
        self._engine = engine
        self._poll_seconds = poll_seconds
        self._subs: dict[str, set[Subscription]] = {}
        self._known: dict[str, int] = {}
        self._reads: list[tuple[str, int, asyncio.Future[list[dict[str, Any]]]]] = []
        self._reading = False
        self._poller: asyncio.Task[None] | None = None
        self.listener: Listener | None = None
        self.reads = 0
        self.read_batches = 0

    def start(self) -> None:
        """Start the poller on the running loop."""
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        if self.listener is None and supports_notifications(self._engine.url):
            self.listener = listen(
                self._engine.url, on_events=lambda run_id, seq: self.on_commit([(run_id, seq)])
            )

    async def stop(self) -> None:
        """Stop the poller and wake every stream so it can notice the shutdown."""
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for subs in self._subs.values():
            for sub in subs:
                sub.wake.set()

    def subscribe(self, run_id: str) -> Subscription:
        """Start waking a new subscription when ``run_id`` may have new events."""
        sub = Subscription(run_id)
        self._subs.setdefault(run_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop waking ``sub``."""
        subs = self._subs.get(sub.run_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.run_id]
            self._known.pop(sub.run_id, None)

    @property
    def subscriptions(self) -> int:
        """How many streams are subscribed."""
        return sum(len(subs) for subs in self._subs.values())

    def on_commit(self, seqs: list[tuple[str, int]]) -> None:
        """Writer listener: runs in ``seqs`` have events up to the given seq."""
        for run_id, seq in seqs:
            subs = self._subs.get(run_id)
            if subs:
                self._known[run_id] = max(seq, self._known.get(run_id, 0))
                for sub in subs:
                    sub.wake.set()

    def poke(self, run_id: str) -> None:
        """Something was written to ``run_id`` outside the writer: wake its streams."""
        # The hub no longer knows how far the run's log goes: streams must read.
        self._known.pop(run_id, None)
        for sub in self._subs.get(run_id, ()):
            sub.wake.set()

    def known_seq(self, run_id: str) -> int | None:
        """The newest seq the hub knows ``run_id`` has, if it knows one."""
        return self._known.get(run_id)

    async def read(self, run_id: str, after: int) -> list[dict[str, Any]]:
        """Up to ``READ_LIMIT`` events of ``run_id`` after ``after``, oldest first."""
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._reads.append((run_id, after, future))
        if not self._reading:
            self._reading = True
            asyncio.get_running_loop().create_task(self._read_batches())
        return await future

    async def _read_batches(self) -> None:
        try:
            while self._reads:
                batch, self._reads = self._reads[:_BATCH_LIMIT], self._reads[_BATCH_LIMIT:]
                cursors = [(run_id, after) for run_id, after, _ in batch]
                try:
                    results = await asyncio.to_thread(
                        events_after_many, self._engine, cursors, READ_LIMIT
                    )
                except Exception as exc:  # every waiting stream must learn why
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.reads += len(batch)
                self.read_batches += 1
                for (_, _, future), events in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(events)
        finally:
            self._reading = False

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            if not self._subs:
                continue
            try:
                found = await asyncio.to_thread(last_seqs, self._engine, list(self._subs))
            except StoreError:
                log.warning("polling runs for new events failed; trying again", exc_info=True)
                continue
            for run_id, (seq, status) in found.items():
                self._woken_by_poll(run_id, seq, status in FINISHED)

    def _woken_by_poll(self, run_id: str, seq: int, finished: bool) -> None:
        subs = self._subs.get(run_id)
        if not subs:
            return
        known = self._known.get(run_id)
        moved = known is None or seq > known
        if moved:
            self._known[run_id] = seq
        for sub in subs:
            newly_finished = finished and not sub.finished
            sub.finished = sub.finished or finished
            if moved or newly_finished:
                sub.wake.set()
