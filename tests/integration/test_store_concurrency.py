"""Store guarantees under concurrency, on either backend: lease fencing and timers firing once."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cuaflow.errors import StoreError
from cuaflow.store import runs as store
from cuaflow.store import tables
from cuaflow.store.database import open_database
from cuaflow.store.writer import Event, UnitOfWork, Writer
from tests.db import database_url


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = open_database(database_url(tmp_path))
    yield engine
    engine.dispose()


def _insert_runs(engine: sa.Engine, count: int, lease_owner: str | None = None) -> list[str]:
    ids = [f"wfr_{i:04d}" for i in range(count)]
    rows: list[dict[str, object]] = [
        {
            "id": run_id,
            "tenant_id": "t",
            "kind": "workflow",
            "status": "running",
            "definition": {"steps": []},
            "params": {},
            "inputs": {},
            "guards": {},
            "lease_owner": lease_owner,
            "created_at": time.time(),
        }
        for run_id in ids
    ]
    with engine.begin() as conn:
        conn.execute(tables.runs.insert(), rows)
    return ids


async def test_a_worker_writer_cannot_write_to_a_run_another_worker_took_over(
    engine: sa.Engine,
) -> None:
    """A unit for a run leased to someone else fails and writes nothing; the others in its batch commit."""
    mine, free, taken = _insert_runs(engine, 3)
    with engine.begin() as conn:
        for run_id, owner in ((mine, "me"), (taken, "other")):
            conn.execute(
                tables.runs.update().where(tables.runs.c.id == run_id).values(lease_owner=owner)
            )
    writer = Writer(engine, owner="me")
    writer.start()
    try:
        futures = [
            writer.submit(UnitOfWork(events=[Event(run_id, "text", {"n": 1})]))
            for run_id in (mine, taken, free)
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await writer.close()
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], StoreError)
    assert "leased to other" in str(results[1])
    assert [len(store.events_after(engine, run_id)) for run_id in (mine, taken, free)] == [1, 0, 1]
    assert store.get_run(engine, taken)["last_seq"] == 0


def test_concurrent_timer_sweeps_fire_each_timer_once(engine: sa.Engine) -> None:
    """Four threads sweeping due timers at once make each of 200 runs runnable exactly once."""
    run_ids = _insert_runs(engine, 200)
    with engine.begin() as conn:
        conn.execute(
            tables.timers.insert(),
            [
                {"run_id": run_id, "kind": "deadline", "due_at": time.time() - 1, "created_at": 0}
                for run_id in run_ids
            ],
        )
    fired: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(4)

    def sweep() -> None:
        start.wait()
        for _ in range(50):
            got = store.fire_due_timers(engine, limit=20)
            with lock:
                fired.update(got)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(fired) == run_ids
    assert set(fired.values()) == {1}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.timers)).scalar() == 0
