"""A second engine for reads, on which a read never takes SQLite's write lock.

The main engine starts every transaction with ``BEGIN IMMEDIATE`` (see
:mod:`cuaflow.store.database`), reads included: right for writers, which must
not fail half-way, but it would make every ``GET``, every event-stream read,
every key lookup and every run a worker loads queue on the one write lock,
behind the commits, through SQLite's sleeping busy handler. In WAL mode a
reader needs no lock at all, so the API and the workers read through this
engine instead: plain deferred ``BEGIN``, ``PRAGMA query_only`` so nothing can
write through it by mistake.

Other databases (PostgreSQL) have no such lock; there the main engine serves
reads too.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy import event

BUSY_TIMEOUT_SECONDS = 5.0


def read_engine(engine: sa.Engine) -> sa.Engine:
    """An engine for reads only on ``engine``'s database (``engine`` itself unless SQLite file)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine
    reader = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS}
    )

    @event.listens_for(reader, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # pysqlite must not begin transactions itself; the listener below does.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA query_only = ON")

    @event.listens_for(reader, "begin")
    def _begin_deferred(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return reader
