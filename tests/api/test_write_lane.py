"""The API's write lane on a real SQLite file: batching, failure isolation, waiting for the lock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cuaflow.api.write_lane import WriteLane
from cuaflow.store import tables
from cuaflow.store.database import open_database
from cuaflow.store.keys import ApiKey, create_key, list_keys


def key_of(tenant: str) -> Callable[[sa.Engine], tuple[str, ApiKey]]:
    """A lane call that creates a key for ``tenant``."""
    return lambda db: create_key(db, tenant_id=tenant)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    """A migrated SQLite file."""
    return open_database(f"sqlite:///{tmp_path / 'lane.db'}")


async def test_concurrent_calls_share_commits_and_all_land(engine: sa.Engine) -> None:
    """Two hundred writes at once are committed in a few batches, and every one is stored."""
    lane = WriteLane(engine)
    try:
        results = await asyncio.gather(*(lane.run(key_of(f"t{i}")) for i in range(200)))
        assert lane.batches < 20
        assert len({key.id for _, key in results}) == 200
        assert len(list_keys(engine)) == 200
    finally:
        lane.close()


async def test_a_failing_call_undoes_only_itself(engine: sa.Engine) -> None:
    """A call that raises after writing is rolled back alone; its batch-mates commit."""

    def write_then_fail(db: sa.Engine) -> None:
        create_key(db, tenant_id="doomed")
        raise ValueError("changed my mind")

    lane = WriteLane(engine)
    try:
        outcomes = await asyncio.gather(
            lane.run(lambda db: create_key(db, tenant_id="a")),
            lane.run(write_then_fail),
            lane.run(lambda db: create_key(db, tenant_id="b")),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], ValueError)
        assert sorted(key.tenant_id for key in list_keys(engine)) == ["a", "b"]
    finally:
        lane.close()


async def test_waits_for_a_lock_another_writer_holds(engine: sa.Engine) -> None:
    """While another connection holds the write lock, a call waits and then succeeds promptly."""
    held = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with engine.begin() as conn:
            conn.execute(sa.select(tables.api_keys.c.id)).all()
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    held.wait(5)
    lane = WriteLane(engine)
    try:
        started = time.monotonic()
        pending = asyncio.ensure_future(lane.run(lambda db: create_key(db, tenant_id="late")))
        await asyncio.sleep(0.2)
        assert not pending.done()
        release.set()
        await pending
        # Released after 0.2 s; SQLite's own busy handler would often add tens of ms.
        assert time.monotonic() - started < 0.3
    finally:
        holder.join()
        lane.close()


async def test_calls_after_an_idle_pause_are_served(engine: sa.Engine) -> None:
    """A call queued just as the lane went idle still runs (no call is left behind)."""
    lane = WriteLane(engine)
    try:
        for index in range(50):
            await lane.run(key_of(f"s{index}"))
            if index % 10 == 0:
                await asyncio.sleep(0)
        assert len(list_keys(engine)) == 50
    finally:
        lane.close()
