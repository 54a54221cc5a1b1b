"""``cuaflow serve``: the HTTP API and a worker in one process, ready with no configuration.

On a database without any API key, the first start creates one (live, tenant
``default``, every scope) and prints it once, so the first ``curl`` works
without another step; later starts print nothing secret.
"""

from __future__ import annotations

import logging

import uvicorn
from rich.console import Console
from sqlalchemy.engine import make_url

from cuaflow.api.app import create_app
from cuaflow.store.database import default_database_url, normalize_url, open_database
from cuaflow.store.keys import count_active_keys, create_key


def run_server(
    host: str, port: int, database_url: str | None, *, worker: bool, console: Console
) -> None:
    """Serve until interrupted."""
    url = normalize_url(database_url) if database_url else default_database_url()
    engine = open_database(url)
    try:
        if count_active_keys(engine) == 0:
            raw, _ = create_key(engine)
            console.print(
                "[bold]No API key existed, so one was created.[/] "
                "It is shown only this once; store it now:\n\n"
                f"    export CUAFLOW_API_KEY={raw}\n\n"
                "Create more with `cuaflow keys create` (--test for a test-mode key).\n",
                highlight=False,
                soft_wrap=True,
            )
    finally:
        engine.dispose()
    app = create_app(database_url=url, run_worker=worker)
    where = f"http://{host}:{port}"
    console.print(
        f"cuaflow API on {where} (docs {where}/docs) · worker "
        f"{'in this process' if worker else 'off'} · database "
        f"{make_url(url).render_as_string(hide_password=True)}",
        highlight=False,
    )
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
