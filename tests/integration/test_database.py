"""The database foundation on real SQLite files: migrations, locking, and error translation."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cuaflow.errors import StoreError, StoreUnavailable
from cuaflow.store import tables
from cuaflow.store.database import (
    alembic_config,
    create_engine,
    migrate,
    open_database,
    translate_errors,
)
from tests.db import database_url, empty_database_url, sqlite_only

# The newest revision on disk: the tests follow new migrations without edits.
HEAD = tuple(ScriptDirectory.from_config(alembic_config()).get_heads())

# Each child imports cuaflow first, then waits for "go" on stdin, so the
# parent can release several children at the same instant.
CHILD_PRELUDE = """
import sys
import sqlalchemy as sa
from cuaflow.store.database import open_database
sys.stdin.readline()
"""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cuaflow.db"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = open_database(database_url(tmp_path))
    yield engine
    engine.dispose()


def _insert_run(engine: sa.Engine, run_id: str = "wfr_1") -> None:
    with engine.begin() as conn:
        conn.execute(
            tables.runs.insert().values(
                id=run_id,
                tenant_id="t1",
                kind="workflow",
                status="queued",
                definition={"steps": []},
                params={},
                inputs={},
                guards={},
                created_at=time.time(),
            )
        )


def _spent_cents(engine: sa.Engine, run_id: str = "wfr_1") -> int:
    with engine.connect() as conn:
        query = sa.select(tables.runs.c.spent_cents).where(tables.runs.c.id == run_id)
        return int(conn.execute(query).scalar_one())


def _run_children(code: str, count: int, url: str) -> list[subprocess.CompletedProcess[str]]:
    script = CHILD_PRELUDE + textwrap.dedent(code)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        stdout, stderr = child.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    return results


def test_open_database_creates_every_table_at_head(engine: sa.Engine) -> None:
    """A fresh file gets every table of the schema and is stamped with the head revision."""
    assert set(sa.inspect(engine).get_table_names()) == set(tables.metadata.tables) | {
        "alembic_version"
    }
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == HEAD


def test_opening_a_migrated_database_again_changes_nothing(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A second open runs no DDL and no writes, and keeps the data already stored."""
    _insert_run(engine)
    again = create_engine(database_url(tmp_path))
    statements: list[str] = []

    @sa.event.listens_for(again, "before_cursor_execute")
    def _record(*args: object) -> None:
        statement = str(args[2])
        statements.append(statement.strip().split()[0].upper())

    migrate(again)
    assert statements
    assert set(statements) <= {"SELECT", "PRAGMA", "BEGIN", "SHOW"}
    assert _spent_cents(again) == 0
    again.dispose()


@sqlite_only
def test_engine_applies_the_sqlite_settings(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections use WAL, foreign keys and the configured synchronous level and busy timeout."""
    monkeypatch.setenv("CUAFLOW_SQLITE_SYNCHRONOUS", "normal")
    monkeypatch.setenv("CUAFLOW_SQLITE_BUSY_TIMEOUT_MS", "1234")
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        pragma = conn.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA busy_timeout").scalar() == 1234
        assert pragma("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@sqlite_only
def test_defaults_are_full_sync_and_five_second_busy_timeout(engine: sa.Engine) -> None:
    """Without settings, commits are fully synced and lock waits last five seconds."""
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_a_bad_synchronous_setting_is_refused(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown CUAFLOW_SQLITE_SYNCHRONOUS value is named in the error."""
    monkeypatch.setenv("CUAFLOW_SQLITE_SYNCHRONOUS", "sometimes")
    with pytest.raises(StoreError, match=r"CUAFLOW_SQLITE_SYNCHRONOUS.*'sometimes'"):
        create_engine(f"sqlite:///{db_path}")


@sqlite_only  # PostgreSQL's read committed lets this lose updates; cuaflow locks rows there
def test_read_then_write_transactions_from_threads_queue_instead_of_failing(
    engine: sa.Engine,
) -> None:
    """Read-modify-write transactions in parallel threads neither fail nor lose updates."""
    _insert_run(engine)
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with engine.begin() as conn:
                    current = conn.execute(sa.select(tables.runs.c.spent_cents)).scalar_one()
                    time.sleep(0.001)  # widen the window a deferred BEGIN would lose in
                    conn.execute(tables.runs.update().values(spent_cents=current + 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _spent_cents(engine) == 60


def test_two_processes_opening_a_fresh_file_at_once_both_succeed(tmp_path: Path) -> None:
    """Two processes migrating the same new file at the same moment both end at head."""
    code = """
    engine = open_database(sys.argv[1])
    with engine.connect() as conn:
        print(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())
    """
    results = _run_children(code, 2, empty_database_url(tmp_path))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert (result.stdout.strip(),) == HEAD


def test_concurrent_increments_from_two_processes_lose_nothing(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """2 processes x 200 increment transactions add exactly 400 and never raise."""
    _insert_run(engine)
    code = """
    engine = open_database(sys.argv[1])
    for _ in range(200):
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE runs SET spent_cents = spent_cents + 1")
    """
    results = _run_children(code, 2, database_url(tmp_path))
    for result in results:
        assert result.returncode == 0, result.stderr
    assert _spent_cents(engine) == 400


@sqlite_only
def test_writing_to_a_read_only_database_raises_store_unavailable(
    engine: sa.Engine, db_path: Path
) -> None:
    """A database opened read-only still reads, and a write names the file and the reason."""
    _insert_run(engine)
    read_only = open_database(f"sqlite:///file:{db_path}?mode=ro&uri=true")
    assert _spent_cents(read_only) == 0
    with pytest.raises(StoreUnavailable, match="read-only") as caught:
        _insert_run(read_only, "wfr_2")
    assert str(db_path) in str(caught.value)
    read_only.dispose()


@sqlite_only
def test_a_lock_held_past_the_busy_timeout_raises_store_unavailable(
    engine: sa.Engine, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting longer than the busy timeout for another process's lock says so, with the wait."""
    _insert_run(engine)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n",
            str(db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("CUAFLOW_SQLITE_BUSY_TIMEOUT_MS", "200")
        impatient = create_engine(f"sqlite:///{db_path}")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            _insert_run(impatient, "wfr_2")
        assert time.monotonic() - started >= 0.19
        assert str(caught.value) == (
            f"the database at {db_path} is locked by another process (waited 0.2 s)"
        )
        impatient.dispose()
    finally:
        holder.communicate("release\n", timeout=10)
    _insert_run(engine, "wfr_3")


def test_translate_errors_covers_driver_errors_outside_an_engine(db_path: Path) -> None:
    """A raw sqlite3 error about a lock becomes StoreUnavailable too."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(StoreUnavailable, match="locked by another process"), translate_errors():
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        holder.close()


@sqlite_only
def test_a_full_database_raises_store_unavailable(engine: sa.Engine) -> None:
    """Running out of space (here: a page limit) reports that the database cannot grow."""
    _insert_run(engine)
    # The page limit is a setting of one connection: set it on the one that writes.
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        big_event = tables.events.insert().values(
            run_id="wfr_1", seq=1, type="big", data={"x": "x" * 200_000}, created_at=0.0
        )
        with pytest.raises(StoreUnavailable, match="cannot grow: database or disk is full"):
            conn.execute(big_event)
        conn.rollback()


def test_an_unopenable_path_raises_store_unavailable(tmp_path: Path) -> None:
    """A database path under a regular file cannot be opened, and the message names the path."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "cuaflow.db"
    with pytest.raises(StoreUnavailable, match="cannot open the database") as caught:
        open_database(f"sqlite:///{path}")
    assert str(path) in str(caught.value)


def test_migrations_create_exactly_the_tables_module(engine: sa.Engine) -> None:
    """Autogenerate finds no difference between the migrated schema and tables.metadata."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, tables.metadata) == []


def test_migrations_downgrade_to_empty_and_upgrade_again(engine: sa.Engine) -> None:
    """Every migration can be undone, and migrate() rebuilds the schema afterwards."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert set(tables.metadata.tables) < set(sa.inspect(engine).get_table_names())


def test_a_database_from_a_newer_cuaflow_is_refused(engine: sa.Engine) -> None:
    """A schema revision this code does not know stops migrate() with a clear error."""
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match=r"revision '9999'.*upgrade cuaflow"):
        migrate(engine)


def test_deleting_a_run_deletes_its_rows_in_other_tables(engine: sa.Engine) -> None:
    """Foreign keys are enforced and cascade from a run to its events."""
    _insert_run(engine)
    with engine.begin() as conn:
        conn.execute(
            tables.events.insert().values(
                run_id="wfr_1", seq=1, type="run.created", data={}, created_at=0.0
            )
        )
        conn.execute(tables.runs.delete())
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.events)).scalar() == 0
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            tables.events.insert().values(
                run_id="missing", seq=1, type="run.created", data={}, created_at=0.0
            )
        )
