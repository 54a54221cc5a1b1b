"""Settings read from the environment (``CUAFLOW_*``), each with a working default."""

from __future__ import annotations

import os
from pathlib import Path

from cuaflow.store.database import DATA_DIR_ENV, DEFAULT_DATA_DIR


def data_dir() -> Path:
    """Where cuaflow keeps its database and per-run working directories (created on demand)."""
    path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
