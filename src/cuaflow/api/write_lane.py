"""Group commit for the API's writes: one thread, one transaction per batch of requests.

Every request that writes (start a run, resume, cancel, save a workflow,
reserve an idempotency key) hands its store call to the lane instead of
running it in a thread of its own. The lane runs the calls queued so far one
after another in a single transaction, each inside a savepoint so that one
failing call undoes only its own writes, commits once, and then answers every
caller. While a batch commits the next one gathers.

Why: SQLite has one write lock. Many request threads each opening a write
transaction queue on it through SQLite's busy handler, which sleeps in growing
steps (1, 2, 5, 10 ... ms); under a few hundred writes a second that turns into
latencies of hundreds of milliseconds. One writer with batched commits pays
one lock and one fsync per batch instead (PostgreSQL gains the fewer commits
too).

The store functions take an ``Engine``; the lane gives them a stand-in whose
``begin()`` opens a savepoint on the batch's connection and whose
``connect()`` reuses it, so they run unchanged.

On SQLite the lane has an engine of its own without a busy timeout and waits
for the write lock itself, retrying every half millisecond: the lock is held
for a millisecond or two at a time (by the worker's commits in the same
process, or another process), and SQLite's own busy handler would sleep in
ever longer steps (15, 20, 25, 50, 100 ms) after a few misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event

from cuaflow.store.database import create_engine

T = TypeVar("T")
_BATCH_LIMIT = 500
LOCK_RETRY_SECONDS = 0.0005
LOCK_WAIT_SECONDS = 5.0


def lane_engine(engine: sa.Engine) -> sa.Engine:
    """The engine the lane writes with: ``engine`` itself, or for an SQLite file a twin
    that fails at once on a held lock instead of sleeping (the lane retries)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine
    twin = create_engine(url.render_as_string(hide_password=False))

    @event.listens_for(twin, "connect")
    def _no_busy_wait(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 0")

    return twin


def _lock_held(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.Error) and seen.sqlite_errorname.startswith("SQLITE_BUSY"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _BatchEngine:
    """Stands in for an ``Engine`` inside a batch: every transaction is a savepoint."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect
        self.url = conn.engine.url

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        with self._conn.begin_nested():
            yield self._conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        yield self._conn


class WriteLane:
    """Runs store calls that write, batched into shared transactions, in one thread."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = lane_engine(engine)
        self._own_engine = self._engine is not engine
        self._pending: list[tuple[Callable[[sa.Engine], Any], asyncio.Future[Any]]] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cuaflow-api-writes")
        self.batches = 0
        self.calls = 0

    async def run(self, call: Callable[[sa.Engine], T]) -> T:
        """Run ``call(engine)`` in the next batch; its result, or its exception, once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((call, future))
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        return await future

    def close(self) -> None:
        """Stop the lane's thread (after the batch in flight)."""
        self._thread.shutdown(wait=True)
        if self._own_engine:
            self._engine.dispose()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[:_BATCH_LIMIT]
                del self._pending[:_BATCH_LIMIT]
                calls = [call for call, _ in batch]
                outcomes = await loop.run_in_executor(self._thread, self._commit, calls)
                self.batches += 1
                self.calls += len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._draining = False

    def _commit(self, calls: list[Callable[[sa.Engine], Any]]) -> list[tuple[bool, Any]]:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return self._commit_once(calls)
            except Exception as exc:  # the batch was rolled back: retry it, or fail its calls
                if not _lock_held(exc) or time.monotonic() > deadline:
                    return [(False, exc)] * len(calls)
                time.sleep(LOCK_RETRY_SECONDS)

    def _commit_once(self, calls: list[Callable[[sa.Engine], Any]]) -> list[tuple[bool, Any]]:
        """Run the calls in one transaction; raises if it cannot begin or commit."""
        outcomes: list[tuple[bool, Any]] = []
        with self._engine.begin() as conn:
            # The store functions only use begin() and connect(); see the module doc.
            engine = cast(sa.Engine, _BatchEngine(conn))
            for call in calls:
                try:
                    outcomes.append((True, call(engine)))
                except Exception as exc:  # the caller, not the batch, decides what it means
                    outcomes.append((False, exc))
        return outcomes
