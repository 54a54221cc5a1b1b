"""``cuaflow worker``: a worker process on the configured database."""

from __future__ import annotations

import asyncio
import logging

from rich.console import Console
from rich.logging import RichHandler

from cuaflow.config import data_dir
from cuaflow.store.database import default_database_url, open_database
from cuaflow.worker.worker import Worker


async def run_worker(concurrency: int, lease_seconds: float, console: Console) -> None:
    """Execute runs until cancelled (Ctrl-C)."""
    logging.basicConfig(level=logging.INFO, handlers=[RichHandler(console=console)])
    engine = open_database()
    worker = Worker(
        engine, data_dir=data_dir(), concurrency=concurrency, lease_seconds=lease_seconds
    )
    await worker.start()
    console.print(f"worker {worker.owner} on {default_database_url()}", highlight=False)
    try:
        await asyncio.Event().wait()
    finally:
        await worker.stop()
