"""Opening cuaflow's database: where it is, how the engine is set up, migrations, and errors.

SQLite is the embedded default; PostgreSQL (through psycopg 3) is the same code
with another URL. :func:`open_database` is the one call most code needs: it
builds the engine and brings the schema to the newest revision.

On SQLite every transaction starts with ``BEGIN IMMEDIATE``: a writer takes the
lock up front and others queue on it (up to the busy timeout) instead of
failing when a read transaction tries to become a write transaction. Engines
made here raise :class:`~cuaflow.errors.StoreUnavailable` instead of a bare
driver error when the database is locked, read-only, full or cannot be opened;
:func:`translate_errors` does the same for code that talks to SQLite outside
such an engine.

Settings (environment variables):

- ``CUAFLOW_DATABASE_URL``: the database; default ``sqlite:///<data dir>/cuaflow.db``
- ``CUAFLOW_DATA_DIR``: the data directory; default ``./cuaflow-data``
- ``CUAFLOW_SQLITE_SYNCHRONOUS``: ``OFF``, ``NORMAL``, ``FULL`` (default) or ``EXTRA``
- ``CUAFLOW_SQLITE_BUSY_TIMEOUT_MS``: how long to wait for a lock; default 5000
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from weakref import WeakKeyDictionary

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from cuaflow.errors import StoreError, StoreUnavailable

DATABASE_URL_ENV = "CUAFLOW_DATABASE_URL"
DATA_DIR_ENV = "CUAFLOW_DATA_DIR"
SYNCHRONOUS_ENV = "CUAFLOW_SQLITE_SYNCHRONOUS"
BUSY_TIMEOUT_ENV = "CUAFLOW_SQLITE_BUSY_TIMEOUT_MS"
DEFAULT_DATA_DIR = "cuaflow-data"
DATABASE_FILE_NAME = "cuaflow.db"
DEFAULT_BUSY_TIMEOUT_MS = 5000
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Any constant works: it only has to be the same in every cuaflow process.
_POSTGRES_MIGRATION_LOCK = 0x637561666C6F77  # "cuaflow"


@dataclass(frozen=True)
class _Place:
    """What an error message says about the database: where it is and how long we waited."""

    where: str | None
    busy_timeout_s: float | None


_PLACES: WeakKeyDictionary[Engine, _Place] = WeakKeyDictionary()


def default_database_url() -> str:
    """The database URL to use: ``CUAFLOW_DATABASE_URL``, else an SQLite file in the data dir.

    The data directory (``CUAFLOW_DATA_DIR``, default ``./cuaflow-data``) is
    created if it does not exist yet.
    """
    configured = os.environ.get(DATABASE_URL_ENV, "").strip()
    if configured:
        return normalize_url(configured)
    data_dir = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).absolute()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreUnavailable(f"cannot create the data directory {data_dir}: {reason}") from exc
    return f"sqlite:///{(data_dir / DATABASE_FILE_NAME).as_posix()}"


def normalize_url(url: str) -> str:
    """Point plain ``postgresql://`` (and ``postgres://``) URLs at the psycopg 3 driver."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def create_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (default :func:`default_database_url`), safe to share between threads.

    Does not touch the schema; :func:`open_database` also migrates.
    """
    parsed = make_url(normalize_url(url) if url else default_database_url())
    if parsed.get_backend_name() == "sqlite":
        busy_timeout_ms = _busy_timeout_ms()
        engine = _create_sqlite_engine(parsed, busy_timeout_ms)
        place = _Place(_describe(parsed), busy_timeout_ms / 1000)
    else:
        engine = sqlalchemy.create_engine(parsed, pool_pre_ping=True)
        place = _Place(_describe(parsed), None)
    _PLACES[engine] = place

    @event.listens_for(engine, "handle_error")
    def _raise_store_unavailable(context: ExceptionContext) -> None:
        translated = _translate(context.sqlalchemy_exception or context.original_exception, place)
        if translated is not None:
            raise translated

    return engine


def _create_sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    synchronous = _synchronous()
    engine = sqlalchemy.create_engine(
        url,
        # The driver's timeout is SQLite's busy timeout; setting it at connect
        # time covers the journal-mode switch below as well.
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Stop pysqlite from issuing its own (deferred) BEGIN, so the "begin"
        # listener below decides how every transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            (journal_mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            # WAL is a property of the file; switching needs a write, which a
            # read-only connection to an existing WAL database cannot do.
            if journal_mode not in ("wal", "memory"):
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _busy_timeout_ms() -> int:
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_MS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise StoreError(f"{BUSY_TIMEOUT_ENV} must be a whole number of milliseconds, got {raw!r}")
    return value


def _synchronous() -> str:
    raw = os.environ.get(SYNCHRONOUS_ENV, "").strip() or "FULL"
    if raw.upper() not in SYNCHRONOUS_MODES:
        allowed = ", ".join(SYNCHRONOUS_MODES)
        raise StoreError(f"{SYNCHRONOUS_ENV} must be one of {allowed}, got {raw!r}")
    return raw.upper()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for cuaflow's migrations, without any ``alembic.ini``.

    ``connection`` is the connection the migrations run on; the migrations'
    ``env.py`` requires one (it never opens its own).
    """
    config = Config()
    # The options go through configparser, where "%" starts an interpolation.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a fast no-op when it is there already.

    Safe to run on every start and from several processes at once: the check
    and the upgrade happen under one write lock (``BEGIN IMMEDIATE`` on SQLite,
    an advisory lock on PostgreSQL), so the second process waits and then
    finds nothing to do.
    """
    with translate_errors(engine), engine.connect() as connection:
        is_sqlite = engine.dialect.name == "sqlite"
        if is_sqlite:
            # SQLite ignores this pragma inside a transaction, and a migration
            # that rebuilds a table (batch mode) must not cascade its DROP.
            _set_sqlite_foreign_keys(connection, enabled=False)
        try:
            with connection.begin():
                _upgrade_locked(connection, engine)
        finally:
            if is_sqlite:
                _set_sqlite_foreign_keys(connection, enabled=True)


def _upgrade_locked(connection: Connection, engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        connection.execute(
            sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": _POSTGRES_MIGRATION_LOCK},
        )
    script = _script_directory()
    current = set(MigrationContext.configure(connection).get_current_heads())
    if current == set(script.get_heads()):
        return
    for revision in current:
        try:
            script.get_revision(revision)
        except CommandError as exc:
            raise StoreError(
                f"the database at {_describe(engine.url)} has schema revision {revision!r}, "
                "which this version of cuaflow does not know; upgrade cuaflow"
            ) from exc
    command.upgrade(alembic_config(connection), "head")
    if engine.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(f"a migration left rows that break foreign keys: {broken[:5]}")


def _set_sqlite_foreign_keys(connection: Connection, *, enabled: bool) -> None:
    # Through the driver connection: SQLAlchemy would begin a transaction first.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]  # a live Connection always holds a DBAPI connection
    try:
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")
    finally:
        cursor.close()


def open_database(url: str | None = None) -> Engine:
    """An engine for ``url`` (default :func:`default_database_url`) with the schema up to date."""
    engine = create_engine(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def translate_errors(engine: Engine | None = None) -> Iterator[None]:
    """Turn "locked", "read-only", "full" and "cannot open" driver errors into StoreUnavailable.

    Engines from :func:`create_engine` already raise StoreUnavailable by
    themselves, with the database's location in the message; wrapping their
    calls in this is harmless. Pass ``engine`` when the code reaches the
    driver another way (a raw DBAPI connection, an engine made elsewhere) so
    the message can say which database.
    """
    try:
        yield
    except (DBAPIError, sqlite3.Error) as exc:
        place = _place(engine) if engine is not None else _Place(None, None)
        translated = _translate(exc, place)
        if translated is None:
            raise
        raise translated from exc


def _place(engine: Engine) -> _Place:
    return _PLACES.get(engine) or _Place(_describe(engine.url), None)


def _describe(url: URL) -> str:
    if url.get_backend_name() != "sqlite":
        return url.render_as_string(hide_password=True)
    database = url.database or ""
    if database in ("", ":memory:"):
        return "(in memory)"
    if database.startswith("file:"):
        return database.removeprefix("file:").partition("?")[0]
    return os.path.abspath(database)


def _translate(exc: BaseException, place: _Place) -> StoreUnavailable | None:
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    database = f"the database at {place.where}" if place.where else "the database"
    if isinstance(original, sqlite3.Error):
        name = original.sqlite_errorname
        reason = str(original)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            waited = f" (waited {place.busy_timeout_s:.1f} s)" if place.busy_timeout_s else ""
            return StoreUnavailable(f"{database} is locked by another process{waited}")
        if name.startswith("SQLITE_READONLY"):
            return StoreUnavailable(
                f"{database} is read-only ({reason}); "
                "cuaflow needs to write to the file and its directory"
            )
        if name == "SQLITE_FULL":
            return StoreUnavailable(f"{database} cannot grow: {reason}")
        if name.startswith("SQLITE_CANTOPEN"):
            return StoreUnavailable(
                f"cannot open {database}: {reason} "
                "(does the directory exist, and may cuaflow write to it?)"
            )
        if name.startswith("SQLITE_IOERR"):
            return StoreUnavailable(f"{database} hit a disk error: {reason}")
        return None
    if isinstance(exc, OperationalError):
        # Server databases report lost connections, timeouts and shutdowns as
        # operational errors; SQL mistakes are ProgrammingError instead.
        return StoreUnavailable(f"{database} is unavailable: {original}")
    return None
