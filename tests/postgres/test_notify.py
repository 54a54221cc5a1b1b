"""LISTEN/NOTIFY on a real PostgreSQL: what is announced, when, and after a lost connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store import tables
from cuaflow.store.database import open_database
from cuaflow.store.notify import Listener, listen
from cuaflow.store.writer import Event, UnitOfWork, apply_units

GATE = parse_workflow(
    {"name": "gate", "steps": [{"id": "gate", "type": "human_approval", "message": "ok?"}]}
)


class Heard:
    """What a listener was told, with a way to wait for it."""

    def __init__(self) -> None:
        self.ready: list[str] = []
        self.events: list[tuple[str, int]] = []
        self.connects = 0
        self.changed = asyncio.Event()

    def on_run_ready(self, run_id: str) -> None:
        self.ready.append(run_id)
        self.changed.set()

    def on_events(self, run_id: str, seq: int) -> None:
        self.events.append((run_id, seq))
        self.changed.set()

    def on_connect(self) -> None:
        self.connects += 1
        self.changed.set()

    async def until(self, predicate: object, timeout: float = 5) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def engine(postgres_url: str) -> sa.Engine:
    return open_database(postgres_url)


@pytest.fixture
async def heard(engine: sa.Engine) -> AsyncIterator[Heard]:
    heard = Heard()
    listener = listen(engine.url, heard.on_run_ready, heard.on_events, on_connect=heard.on_connect)
    await listener.wait_connected()
    try:
        yield heard
    finally:
        await listener.close()


async def test_created_and_resumed_runs_are_announced_with_their_last_seq(
    engine: sa.Engine, heard: Heard
) -> None:
    """Creating a run and resuming it each announce the run, and events carry runs.last_seq."""
    run_id = str(start_workflow_run(engine, GATE, RunOptions())["id"])
    await heard.until(lambda: run_id in heard.ready)
    with engine.begin() as conn:
        conn.execute(
            tables.runs.update()
            .where(tables.runs.c.id == run_id)
            .values(status="awaiting_human", runnable_at=None)
        )
    heard.ready.clear()
    store.resume_run(engine, run_id, approved=True)
    await heard.until(lambda: run_id in heard.ready)
    last_seq = store.get_run(engine, run_id)["last_seq"]
    await heard.until(lambda: (run_id, last_seq) in heard.events)
    assert last_seq >= 1


async def test_a_rolled_back_write_announces_nothing(engine: sa.Engine, heard: Heard) -> None:
    """Notifications are sent at commit: events written in a rolled-back transaction are never heard."""
    run_id = str(start_workflow_run(engine, GATE, RunOptions())["id"])
    created_seq = store.get_run(engine, run_id)["last_seq"]
    await heard.until(lambda: (run_id, created_seq) in heard.events)
    heard.events.clear()
    with engine.connect() as conn, conn.begin() as transaction:
        apply_units(conn, [UnitOfWork(events=[Event(run_id, "text", {"message": "no"})])])
        transaction.rollback()
    with engine.begin() as conn:
        apply_units(conn, [UnitOfWork(events=[Event(run_id, "text", {"message": "yes"})])])
    seq = store.get_run(engine, run_id)["last_seq"]
    await heard.until(lambda: (run_id, seq) in heard.events)
    assert seq == created_seq + 1
    assert heard.events == [(run_id, seq)]


async def test_fired_timers_announce_their_runs(engine: sa.Engine, heard: Heard) -> None:
    """A due timer swept by any process announces its run as runnable."""
    run_id = str(start_workflow_run(engine, GATE, RunOptions())["id"])
    await heard.until(lambda: run_id in heard.ready)
    heard.ready.clear()
    with engine.begin() as conn:
        conn.execute(
            tables.timers.insert().values(
                run_id=run_id, kind="wake", due_at=time.time() - 1, created_at=time.time()
            )
        )
    assert store.fire_due_timers(engine) == [run_id]
    await heard.until(lambda: heard.ready == [run_id])


async def test_the_listener_reconnects_and_says_so_after_its_connection_dies(
    engine: sa.Engine, heard: Heard
) -> None:
    """Killing the listening backend leads to a new connection, an on_connect, and working LISTEN."""
    assert heard.connects == 1
    admin_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        ).fetchall()
    assert killed == [(True,)]
    await heard.until(lambda: heard.connects == 2)
    run_id = str(start_workflow_run(engine, GATE, RunOptions())["id"])
    await heard.until(lambda: run_id in heard.ready)


async def test_subscribers_of_one_process_share_one_connection(
    engine: sa.Engine, heard: Heard
) -> None:
    """A second subscriber on the same loop and database adds no connection and hears the same."""
    second = Heard()
    listener: Listener = listen(engine.url, second.on_run_ready, second.on_events)
    try:
        await listener.wait_connected()
        with engine.connect() as conn:
            listening = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                )
            ).scalar_one()
        assert listening == 1
        run_id = str(start_workflow_run(engine, GATE, RunOptions())["id"])
        await second.until(lambda: run_id in second.ready)
        await heard.until(lambda: run_id in heard.ready)
    finally:
        await listener.close()
