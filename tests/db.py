"""The database each test runs on: SQLite by default, PostgreSQL with one environment variable.

``CUAFLOW_TEST_DATABASE=postgres`` runs the same tests on PostgreSQL. The
server is the one at ``CUAFLOW_TEST_POSTGRES_URL`` (any database on it; the
user must be allowed to create databases), or else one this module starts
itself on first use (:mod:`tests.postgres_server`) and stops at the end of the
session. Every test gets a database of its own, copied from a template that
was migrated once (``CREATE DATABASE ... TEMPLATE``, a few milliseconds), and
dropped again after the test.

Tests never build a database URL themselves: they call
:func:`database_url` with their ``tmp_path``, which answers the same URL for
the same path and name within a test.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from cuaflow.store.database import open_database
from tests.postgres_server import PostgresServer, PostgresUnavailable

BACKEND_ENV = "CUAFLOW_TEST_DATABASE"
POSTGRES_URL_ENV = "CUAFLOW_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgres")


def backend() -> str:
    """``sqlite`` or ``postgres``: the backend this test session runs on."""
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower() or "sqlite"
    if chosen in ("postgresql", "pg"):
        chosen = "postgres"
    if chosen not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV} must be sqlite or postgres, got {chosen!r}")
    return chosen


ON_POSTGRES = backend() == "postgres"

sqlite_only = pytest.mark.skipif(
    ON_POSTGRES, reason="SQLite-specific: file locking, pragmas or file permissions"
)


class _Cluster:
    """A PostgreSQL server, a migrated template on it, and the test databases made from it."""

    def __init__(self) -> None:
        self._server: PostgresServer | None = None
        configured = os.environ.get(POSTGRES_URL_ENV, "").strip()
        if configured:
            self.admin_url = make_url(configured).set(drivername="postgresql")
        else:
            self._server = PostgresServer()
            try:
                self._server.start()
            except BaseException:
                self._server.stop()
                raise
            self.admin_url = make_url(self._server.url)
        # A name of this session's own, so sessions sharing a server never collide.
        self._prefix = f"cuaflow_test_{secrets.token_hex(3)}"
        self.template = f"{self._prefix}_template"
        self._admin = psycopg.connect(self._conninfo(self.admin_url.database), autocommit=True)
        self._created: list[str] = []
        self._lock = threading.Lock()
        # FILE_COPY (PostgreSQL 15+) copies a small template twice as fast as the WAL default.
        self._strategy = " STRATEGY FILE_COPY" if self._admin.info.server_version >= 150000 else ""
        self._admin.execute(f'CREATE DATABASE "{self.template}"')
        migrated = open_database(self.url(self.template))
        migrated.dispose()

    def _conninfo(self, database: str | None) -> str:
        url = self.admin_url.set(database=database)
        return url.render_as_string(hide_password=False)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        url = self.admin_url.set(drivername="postgresql+psycopg", database=database)
        return url.render_as_string(hide_password=False)

    def create(self, *, migrated: bool = True) -> str:
        """A new database, copied from the migrated template or else empty; its name."""
        template = self.template if migrated else "template0"
        with self._lock:
            name = f"{self._prefix}_{len(self._created) + 1}"
            self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{self._strategy}')
            self._created.append(name)
            return name

    def mark(self) -> int:
        """How many databases exist now; pass it to :meth:`drop_since`."""
        return len(self._created)

    def drop_since(self, mark: int) -> list[str]:
        """Drop the databases created after ``mark``, disconnecting whoever still uses them."""
        with self._lock:
            doomed, self._created = self._created[mark:], self._created[:mark]
            for name in doomed:
                self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return doomed

    def close(self) -> None:
        """Drop everything this session made; stop the server if we started it."""
        try:
            if self._server is None:
                self.drop_since(0)
                self._admin.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self._admin.close()
        finally:
            if self._server is not None:
                self._server.stop()


_cluster: _Cluster | None = None
_cluster_error: str | None = None
_by_place: dict[str, str] = {}


def postgres_cluster() -> _Cluster:
    """The session's PostgreSQL (started on first use); skips the test if there is none."""
    global _cluster, _cluster_error  # noqa: PLW0603  # one server for the whole session
    if _cluster is None and _cluster_error is None:
        try:
            _cluster = _Cluster()
        except (PostgresUnavailable, psycopg.Error) as exc:
            _cluster_error = str(exc)
        else:
            atexit.register(_cluster.close)
    if _cluster is None:
        pytest.skip(f"PostgreSQL is not available: {_cluster_error}")
    return _cluster


def fresh_postgres_url() -> str:
    """A new migrated database on the session's PostgreSQL, whatever the backend of the session."""
    cluster = postgres_cluster()
    return cluster.url(cluster.create())


def empty_database_url(tmp_path: Path, name: str = "cuaflow") -> str:
    """Like :func:`database_url`, but a database no migration has touched yet."""
    if not ON_POSTGRES:
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    place = str(tmp_path / name)
    if place not in _by_place:
        cluster = postgres_cluster()
        _by_place[place] = cluster.url(cluster.create(migrated=False))
    return _by_place[place]


def database_url(tmp_path: Path, name: str = "cuaflow") -> str:
    """The URL of this test's database ``name``: a file in ``tmp_path``, or a PostgreSQL database.

    The same ``tmp_path`` and ``name`` give the same database, so a test can
    hand the URL to child processes or open it twice.
    """
    if not ON_POSTGRES:
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    place = str(tmp_path / name)
    if place not in _by_place:
        _by_place[place] = fresh_postgres_url()
    return _by_place[place]


def mark() -> int:
    """A bookmark in the list of databases made so far (0 when PostgreSQL is not in use)."""
    return _cluster.mark() if _cluster is not None else 0


def drop_since(mark: int) -> None:
    """Drop the PostgreSQL databases made after ``mark`` (nothing to do on SQLite)."""
    if _cluster is None:
        return
    dropped = set(_cluster.drop_since(mark))
    for place, url in list(_by_place.items()):
        if make_url(url).database in dropped:
            del _by_place[place]


def shutdown() -> None:
    """Stop the session's PostgreSQL, if one was started."""
    global _cluster  # noqa: PLW0603  # one server for the whole session
    if _cluster is not None:
        atexit.unregister(_cluster.close)
        _cluster.close()
        _cluster = None
