"""Alembic's entry point for cuaflow's migrations.

cuaflow runs these through :func:`cuaflow.store.database.migrate`, which hands
over a connection already inside the transaction that holds the migration lock,
so this script never opens a connection or commits by itself.

To write a new migration after changing :mod:`cuaflow.store.tables`, generate
it against a database at the current head and then tidy it by hand::

    from alembic import command
    from cuaflow.store.database import alembic_config, open_database

    engine = open_database("sqlite:///scratch.db")
    with engine.begin() as connection:
        command.revision(alembic_config(connection), "what changed", autogenerate=True,
                         rev_id="0002")
"""

from __future__ import annotations

from alembic import context

from cuaflow.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "cuaflow's migrations need a connection in config.attributes['connection']; "
        "run them with cuaflow.store.database.migrate()"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite changes most constraints only by rebuilding the table.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
