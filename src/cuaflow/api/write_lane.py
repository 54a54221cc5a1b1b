"""Group commit for the API's writes: one transaction per batch of requests.

Every request that writes (start a run, resume, cancel, save a workflow,
reserve an idempotency key) hands its store call to the lane instead of
running it in a thread of its own. The lane runs the calls queued so far one
after another in a single transaction, each inside a savepoint so that one
failing call undoes only its own writes, commits once, and then answers every
caller. While a batch commits the next one gathers. On SQLite there is one
such writer; on a server database (PostgreSQL) a few work side by side, since
there every statement is a round trip and transactions may run concurrently.

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
SERVER_WIDTH = 8
CALL_ATTEMPTS = 3


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


def _retryable(exc: BaseException) -> bool:
    """An SQLite lock held by another writer, or a PostgreSQL deadlock or serialization failure:
    nothing of the batch was written and running it again can succeed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.Error) and seen.sqlite_errorname.startswith("SQLITE_BUSY"):
            return True
        if getattr(seen, "sqlstate", None) in ("40P01", "40001"):
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

    def savepoint(self) -> sa.NestedTransaction:
        """A savepoint on the batch's connection (for one whole call)."""
        return self._conn.begin_nested()


class WriteLane:
    """Runs store calls that write, batched into shared transactions (one writer on SQLite)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = lane_engine(engine)
        self._own_engine = self._engine is not engine
        # SQLite has one write lock: one writer. A server database takes
        # concurrent transactions, and each costs round trips: a few writers.
        self.width = 1 if engine.dialect.name == "sqlite" else SERVER_WIDTH
        self._pending: list[tuple[Callable[[sa.Engine], Any], asyncio.Future[Any]]] = []
        self._drainers: set[asyncio.Task[None]] = set()
        # Counted by the drainers themselves: a finished task leaves the set
        # only in a later callback, too late for a call queued meanwhile.
        self._draining = 0
        self._thread = ThreadPoolExecutor(
            max_workers=self.width, thread_name_prefix="cuaflow-api-writes"
        )
        self.batches = 0
        self.calls = 0

    async def run(self, call: Callable[[sa.Engine], T]) -> T:
        """Run ``call(engine)`` in the next batch; its result, or its exception, once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((call, future))
        if self._draining < self.width:
            self._draining += 1
            drainer = loop.create_task(self._drain())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    def close(self) -> None:
        """Stop the lane's thread (after the batch in flight)."""
        self._thread.shutdown(wait=True)
        if self._own_engine:
            self._engine.dispose()

    async def _drain(self) -> None:
        try:
            await self._drain_pending()
        finally:
            self._draining -= 1

    async def _drain_pending(self) -> None:
        loop = asyncio.get_running_loop()
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

    def _commit(self, calls: list[Callable[[sa.Engine], Any]]) -> list[tuple[bool, Any]]:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return self._commit_once(calls)
            except Exception as exc:  # the batch was rolled back: retry it, or fail its calls
                if not _retryable(exc) or time.monotonic() > deadline:
                    return [(False, exc)] * len(calls)
                time.sleep(LOCK_RETRY_SECONDS)

    def _commit_once(self, calls: list[Callable[[sa.Engine], Any]]) -> list[tuple[bool, Any]]:
        """Run the calls in one transaction; raises if it cannot begin or commit."""
        with self._engine.begin() as conn:
            # The store functions only use begin() and connect(); see the module doc.
            batch = _BatchEngine(conn)
            engine = cast(sa.Engine, batch)
            return [self._call(call, batch, engine) for call in calls]

    @staticmethod
    def _call(
        call: Callable[[sa.Engine], Any], batch: _BatchEngine, engine: sa.Engine
    ) -> tuple[bool, Any]:
        for attempt in range(CALL_ATTEMPTS):
            try:
                # A savepoint around the whole call: if it raises, none of its
                # writes stay, even those of store transactions it completed.
                with batch.savepoint():
                    return True, call(engine)
            except Exception as exc:  # the caller, not the batch, decides what it means
                # A deadlock inside the call's savepoint undid only the call: try it again.
                if attempt + 1 == CALL_ATTEMPTS or not _retryable(exc):
                    return False, exc
        raise AssertionError("unreachable")  # the loop always returns
