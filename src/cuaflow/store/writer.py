"""Group commit: many runs' step results written in one transaction.

Every step instance a run completes becomes a :class:`UnitOfWork` (its journal
row, its events, its billing, its changes to run rows). Units are queued here
and a single flusher writes everything queued so far in one transaction, then
resolves each unit's future. While one transaction commits the next batch
gathers, so the cost of a commit is shared by every run that finished a step
meanwhile: this is what lets one SQLite file carry thousands of durable steps a
second.

Units commit in the order they were queued. A run may therefore queue several
control-flow steps without waiting and only wait (``await`` the last future)
before something leaves the process: an agent action, a suspension, the end of
the run. If the process dies first, nothing after the last committed unit is
journalled, and replay recomputes it.

Event ``seq`` numbers are assigned inside the transaction from ``runs.last_seq``
(read under the write lock), so they are gap-free per run even when an API
process appends events to the same run.

Every transaction locks the rows of the runs it touches first, in id order
(``SELECT ... FOR UPDATE`` on PostgreSQL), so two writers never deadlock. A
writer that belongs to a worker (``owner``) refuses a unit for a run whose
lease another worker now holds: a worker that stalled past its lease cannot
write over the one that took the run over. On PostgreSQL the transaction also
sends the notifications of :mod:`cuaflow.store.notify`, delivered at commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cuaflow.errors import StoreError
from cuaflow.store import tables
from cuaflow.store.database import translate_errors
from cuaflow.store.notify import notify_events, notify_runs_ready
from cuaflow.store.webhooks import enqueue_status_changes


@dataclass
class Event:
    """One event to append to a run's log."""

    run_id: str
    type: str
    data: dict[str, Any]
    step_id: str | None = None


@dataclass
class UnitOfWork:
    """What one step instance (or one agent step) writes, all or nothing."""

    events: list[Event] = field(default_factory=list)
    journal: list[dict[str, Any]] = field(default_factory=list)
    billing: list[dict[str, Any]] = field(default_factory=list)
    # run id -> columns to set; "+column" keys are added to the current value.
    run_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_runs: list[dict[str, Any]] = field(default_factory=list)
    new_timers: list[dict[str, Any]] = field(default_factory=list)
    # (run id, timer kind) pairs whose timers are deleted.
    cancel_timers: list[tuple[str, str]] = field(default_factory=list)

    def update_run(self, run_id: str, **values: Any) -> None:
        """Set columns of a run row; a key starting with ``+`` adds to the column."""
        self.run_updates.setdefault(run_id, {}).update(values)

    def touched_runs(self) -> set[str]:
        """The ids of the existing runs this unit writes to (not the runs it creates)."""
        touched = {event.run_id for event in self.events} | set(self.run_updates)
        touched |= {row["run_id"] for row in (*self.journal, *self.billing, *self.new_timers)}
        touched |= {run_id for run_id, _ in self.cancel_timers}
        return touched - {row["id"] for row in self.new_runs}


CommitListener = Callable[[list[tuple[str, int]]], None]


class Writer:
    """Queues units of work and commits them in batches from one thread.

    With ``owner`` (a worker's lease owner name), units that touch a run
    leased to another owner are refused: their futures fail with
    :class:`~cuaflow.errors.StoreError` and nothing of them is written.
    """

    def __init__(self, engine: sa.Engine, *, owner: str | None = None) -> None:
        self._engine = engine
        self.owner = owner
        self._pending: list[tuple[UnitOfWork, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cuaflow-writer")
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[CommitListener] = []
        self.batches = 0
        self.units = 0

    def start(self) -> None:
        """Start the flusher on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None:
            while self._pending:
                await asyncio.sleep(0.001)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._thread.shutdown(wait=True)

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener([(run_id, last_seq), ...])`` after each batch that wrote events."""
        self._listeners.append(listener)

    def submit(self, unit: UnitOfWork) -> asyncio.Future[None]:
        """Queue a unit; the returned future resolves once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((unit, future))
        self._wakeup.set()
        return future

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                seqs, refused = await loop.run_in_executor(
                    self._thread, self._commit, [u for u, _ in batch]
                )
            except Exception as exc:  # every waiter must learn why its write failed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.units += len(batch)
            for index, (_, future) in enumerate(batch):
                if future.done():
                    continue
                if index in refused:
                    future.set_exception(StoreError(refused[index]))
                else:
                    future.set_result(None)
            if seqs:
                for listener in self._listeners:
                    listener(seqs)

    def _commit(self, units: list[UnitOfWork]) -> tuple[list[tuple[str, int]], dict[int, str]]:
        with translate_errors(), self._engine.begin() as conn:
            locked = _lock_runs(conn, units)
            refused = _refused(units, locked, self.owner) if self.owner else {}
            accepted = [unit for index, unit in enumerate(units) if index not in refused]
            return _apply(conn, accepted, locked), refused


_RUN_COLUMNS = frozenset(tables.runs.c.keys())


def apply_units(conn: sa.Connection, units: list[UnitOfWork]) -> list[tuple[str, int]]:
    """Write ``units`` in order inside the caller's transaction; return new last seqs."""
    return _apply(conn, units, _lock_runs(conn, units))


@dataclass(frozen=True)
class _LockedRun:
    last_seq: int
    lease_owner: str | None


def _lock_runs(conn: sa.Connection, units: list[UnitOfWork]) -> dict[str, _LockedRun]:
    run_ids = sorted(set().union(*(unit.touched_runs() for unit in units)))
    if not run_ids:
        return {}
    runs = tables.runs
    # One order for every transaction that locks several runs: no deadlocks.
    query = (
        sa.select(runs.c.id, runs.c.last_seq, runs.c.lease_owner)
        .where(runs.c.id.in_(run_ids))
        .order_by(runs.c.id)
        .with_for_update()
    )
    return {row.id: _LockedRun(row.last_seq, row.lease_owner) for row in conn.execute(query)}


def _refused(units: list[UnitOfWork], locked: dict[str, _LockedRun], owner: str) -> dict[int, str]:
    refused: dict[int, str] = {}
    for index, unit in enumerate(units):
        for run_id in sorted(unit.touched_runs()):
            holder = locked[run_id].lease_owner if run_id in locked else None
            if holder not in (None, owner):
                refused[index] = (
                    f"run '{run_id}' is leased to {holder} now; the write of {owner} was refused"
                )
                break
    return refused


def _apply(
    conn: sa.Connection, units: list[UnitOfWork], locked: dict[str, _LockedRun]
) -> list[tuple[str, int]]:
    now = time.time()
    new_runs = [row for unit in units for row in unit.new_runs]
    if new_runs:
        # An executemany insert ignores keys that name no column: refuse them instead.
        unknown = {key for row in new_runs for key in row} - _RUN_COLUMNS
        if unknown:
            raise ValueError(f"runs has no column(s) {sorted(unknown)}")
        conn.execute(tables.runs.insert(), new_runs)
    last_seq = {run_id: run.last_seq for run_id, run in locked.items()}
    last_seq |= {row["id"]: row.get("last_seq", 0) for row in new_runs}
    events = [event for unit in units for event in unit.events]
    written: set[str] = set()
    if events:
        rows = []
        for event in events:
            if event.run_id not in last_seq:
                continue  # the run is gone (deleted); its events go with it
            written.add(event.run_id)
            last_seq[event.run_id] += 1
            rows.append(
                {
                    "run_id": event.run_id,
                    "seq": last_seq[event.run_id],
                    "type": event.type,
                    "step_id": event.step_id,
                    "data": event.data,
                    "created_at": now,
                }
            )
        if rows:
            conn.execute(tables.events.insert(), rows)
    new_seqs = sorted((run_id, last_seq[run_id]) for run_id in written)
    _update_runs(conn, units, dict(new_seqs))
    # Webhook outbox rows commit with the status changes they announce, or not at all.
    enqueue_status_changes(conn, units)
    journal = [row for unit in units for row in unit.journal]
    if journal:
        _upsert_journal(conn, journal, now)
    billing = [row | {"created_at": now} for unit in units for row in unit.billing]
    if billing:
        conn.execute(tables.billing.insert(), billing)
    for unit in units:
        for run_id, kind in unit.cancel_timers:
            conn.execute(
                tables.timers.delete().where(
                    tables.timers.c.run_id == run_id, tables.timers.c.kind == kind
                )
            )
    timers = [row | {"created_at": now} for unit in units for row in unit.new_timers]
    if timers:
        conn.execute(tables.timers.insert(), timers)
    notify_runs_ready(conn, _made_runnable(units))
    notify_events(conn, new_seqs)
    return new_seqs


def _made_runnable(units: list[UnitOfWork]) -> set[str]:
    ready = {row["id"] for unit in units for row in unit.new_runs if row.get("runnable_at")}
    for unit in units:
        for run_id, values in unit.run_updates.items():
            if values.get("runnable_at") is not None:
                ready.add(run_id)
    return ready


def _update_runs(conn: sa.Connection, units: list[UnitOfWork], last_seq: dict[str, int]) -> None:
    merged: dict[str, dict[str, Any]] = {
        run_id: {"last_seq": seq} for run_id, seq in last_seq.items()
    }
    for unit in units:
        for run_id, values in unit.run_updates.items():
            target = merged.setdefault(run_id, {})
            for key, value in values.items():
                if key.startswith("+"):
                    target[key] = target.get(key, 0) + value
                else:
                    target[key] = value
    # Runs whose updates name the same columns share one executemany.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for run_id, values in merged.items():
        row = {"_id": run_id} | {_param(key): value for key, value in values.items()}
        groups.setdefault(tuple(sorted(values)), []).append(row)
    runs = tables.runs
    for keys, rows in groups.items():
        assignments: dict[str, Any] = {}
        for key in keys:
            column = key.removeprefix("+")
            value = sa.bindparam(_param(key))
            assignments[column] = runs.c[column] + value if key.startswith("+") else value
        statement = runs.update().where(runs.c.id == sa.bindparam("_id")).values(assignments)
        conn.execute(statement, rows)


def _param(key: str) -> str:
    # Bind parameter names must be plain identifiers in every driver's paramstyle.
    return f"inc_{key[1:]}" if key.startswith("+") else f"set_{key}"


def _upsert_journal(conn: sa.Connection, rows: list[dict[str, Any]], now: float) -> None:
    journal = tables.journal
    # One path may appear twice in a batch (started, then completed): keep the last.
    latest = {(row["run_id"], row["path"]): row | {"created_at": now} for row in rows}
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    insert = dialect_insert(journal)
    replace = {
        name: insert.excluded[name]
        for name in ("step_id", "step_type", "state", "result", "created_at")
    }
    conn.execute(
        insert.on_conflict_do_update(index_elements=["run_id", "path"], set_=replace),
        list(latest.values()),
    )
