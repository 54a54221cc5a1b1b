"""Fixtures shared by all tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cuaflow.store.database import open_database
from tests import db
from tests.integration.engine_harness import Harness


@pytest.fixture(scope="session", autouse=True)
def _postgres_server() -> Iterator[None]:
    """Stop the session's PostgreSQL (if a test started one) when the session ends."""
    yield
    db.shutdown()


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases a test made (session fixtures' databases are made earlier)."""
    bookmark = db.mark()
    yield
    db.drop_since(bookmark)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A fresh database (SQLite, or PostgreSQL with CUAFLOW_TEST_DATABASE) with a running worker."""
    engine = open_database(db.database_url(tmp_path))
    h = Harness(engine, tmp_path / "data")
    await h.start_worker()
    try:
        yield h
    finally:
        await h.stop_worker()
        engine.dispose()
