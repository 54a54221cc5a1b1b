"""Fixtures shared by all tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cuaflow.store.database import open_database
from tests.integration.engine_harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A fresh SQLite database with a running worker."""
    engine = open_database(f"sqlite:///{tmp_path / 'cuaflow.db'}")
    h = Harness(engine, tmp_path / "data")
    await h.start_worker()
    try:
        yield h
    finally:
        await h.stop_worker()
        engine.dispose()
