"""Fixtures of the PostgreSQL-only tests: a fresh migrated database on the session's server.

These tests need PostgreSQL whatever ``CUAFLOW_TEST_DATABASE`` says; they
start the session's throwaway server themselves (or use
``CUAFLOW_TEST_POSTGRES_URL``) and are skipped, with the reason, when there is
no PostgreSQL to run.
"""

from __future__ import annotations

import pytest

from tests.db import fresh_postgres_url


@pytest.fixture
def postgres_url() -> str:
    """A new migrated PostgreSQL database for this test, dropped after it."""
    return fresh_postgres_url()
