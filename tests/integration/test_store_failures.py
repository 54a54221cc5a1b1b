"""A locked or read-only database stops work with a clear error and corrupts nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.errors import StoreUnavailable
from cuaflow.store import runs as store
from cuaflow.store.database import open_database
from tests.integration.engine_harness import Harness, bash, wf


async def test_run_survives_a_database_locked_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits that time out on a lock release the run; it is replayed later and ends right."""
    monkeypatch.setenv("CUAFLOW_SQLITE_BUSY_TIMEOUT_MS", "200")
    path = tmp_path / "cuaflow.db"
    engine = open_database(f"sqlite:///{path}")
    harness = Harness(engine, tmp_path / "data")
    await harness.start_worker(lease_seconds=1.0)
    try:
        run_id = harness.start(
            wf(
                bash("one", "echo 1 >> effects.log"),
                bash("pause", "sleep 0.5"),
                bash("two", "echo 2 >> effects.log"),
            )
        )
        while "one" not in harness.bindings(run_id):  # "one" is journalled as completed
            await asyncio.sleep(0.02)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # like another process holding the write lock
        await asyncio.sleep(1.5)  # well past the 0.2 s busy timeout
        locker.rollback()
        locker.close()
        run = await harness.wait(run_id, timeout=30)
    finally:
        await harness.stop_worker()
    assert run["status"] == "succeeded"
    effects = (tmp_path / "data" / "runs" / run_id / "effects.log").read_text().split()
    assert effects.count("1") == 1  # a step that completed before the lock never ran again
    events = store.events_after(engine, run_id, 0, limit=10_000)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert run["spent_cents"] == 5 * len([e for e in events if e["type"] == "tool_call"])


def test_read_only_database_is_a_clear_error(tmp_path: Path) -> None:
    """Starting a run on a read-only database names the problem and writes nothing."""
    path = tmp_path / "cuaflow.db"
    open_database(f"sqlite:///{path}").dispose()
    read_only = open_database(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StoreUnavailable) as caught:
        start_workflow_run(read_only, parse_workflow(wf(bash("a", "true"))), RunOptions())
    assert "read-only" in str(caught.value)
    assert str(path) in str(caught.value)
